package invalidate_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/invalidate"
	"github.com/tollgate/tollgate/internal/testenv"
)

// TestFeedReadsEachCommittedEventOnce: a feed returns the events committed since it
// started, each once, including one whose transaction took its id first and committed
// after a later one was read — the case a reader going by id would miss.
func TestFeedReadsEachCommittedEventOnce(t *testing.T) {
	ctx := context.Background()
	pool := testenv.DB(t)
	// A transaction of the cluster older than the event before Start holds the snapshot's
	// xmin below it (as any other process's may): Start must still leave that event out.
	older, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer older.Rollback(ctx) //nolint:errcheck
	if _, err := older.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
		t.Fatal(err)
	}
	if err := invalidate.Record(ctx, pool, invalidate.Event{Kind: invalidate.Prices}); err != nil {
		t.Fatal(err)
	}
	feed := invalidate.NewFeed(pool)
	if err := feed.Start(ctx); err != nil {
		t.Fatal(err)
	}
	poll := func(want ...invalidate.Event) {
		t.Helper()
		got, err := feed.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("poll: %+v, want %+v", got, want)
		}
	}
	poll() // the event before Start is not the feed's
	if err := older.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// A transaction records first (its row takes the lower id) and stays open.
	slow, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Rollback(ctx) //nolint:errcheck
	revoked := invalidate.Event{Kind: invalidate.Key, ID: "aa11"}
	if err := invalidate.Record(ctx, slow, revoked); err != nil {
		t.Fatal(err)
	}
	user := invalidate.UserEvent(7)
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return invalidate.Record(ctx, tx, user, invalidate.Event{Kind: invalidate.Accounts})
	})
	if err != nil {
		t.Fatal(err)
	}
	poll(user, invalidate.Event{Kind: invalidate.Accounts})
	poll()
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	poll(revoked)
	poll()

	// A rolled-back transaction's event never comes.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := invalidate.Record(ctx, tx, invalidate.UserEvent(9)); err != nil {
			return err
		}
		return context.Canceled
	})
	if err != context.Canceled {
		t.Fatal(err)
	}
	if err := invalidate.Record(ctx, pool, invalidate.UserEvent(10)); err != nil {
		t.Fatal(err)
	}
	poll(invalidate.UserEvent(10))

	// A second feed started now sees none of it.
	other := invalidate.NewFeed(pool)
	if got, err := other.Poll(ctx); err != nil || len(got) != 0 {
		t.Fatalf("a new feed's first poll: %+v %v", got, err)
	}
}
