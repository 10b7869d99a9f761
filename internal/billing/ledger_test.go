package billing_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/db/sqlc"
)

// TestPostMany: several users' entries are posted at once as Post would post each —
// ledger rows, balances moved, what was applied — and an entry whose (kind, ref) exists
// changes nothing. Entries PostMany cannot order safely are refused.
func TestPostMany(t *testing.T) {
	b := setupRedeem(t, 3)
	ctx := context.Background()
	post := func(entries ...billing.Entry) ([]billing.Posted, error) {
		var out []billing.Posted
		err := pgx.BeginFunc(ctx, b.db, func(tx pgx.Tx) error {
			var err error
			out, err = billing.PostMany(ctx, tx, entries)
			return err
		})
		return out, err
	}
	u0, u1, u2 := b.users[0], b.users[1], b.users[2]
	got, err := post(
		billing.Entry{UserID: u2, Amount: 500, Kind: "topup", Ref: "t2"},
		billing.Entry{UserID: u0, Amount: 100, Kind: "topup", Ref: "t0"},
	)
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].Applied || got[0].Row.UserID != u2 || got[0].Row.AmountNano != 500 || got[0].Balance != 500 ||
		!got[1].Applied || got[1].Row.UserID != u0 || got[1].Row.Ref != "t0" || got[1].Balance != 100 {
		t.Fatalf("posted %+v", got)
	}

	// t0 again (not applied) beside a new debit of u1.
	got, err = post(
		billing.Entry{UserID: u0, Amount: 100, Kind: "topup", Ref: "t0"},
		billing.Entry{UserID: u1, Amount: -30, Kind: "usage", Ref: "d1", Note: "3 requests"},
	)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Applied || got[0].Balance != 0 || !got[1].Applied || got[1].Balance != -30 || got[1].Row.Note != "3 requests" {
		t.Fatalf("posted %+v", got)
	}
	for user, want := range map[int64]int64{u0: 100, u1: -30, u2: 500} {
		bal, err := sqlc.New().UserBalanceGet(ctx, b.db, user)
		if err != nil {
			t.Fatal(err)
		}
		if bal != want {
			t.Fatalf("user %d: balance %d, want %d", user, bal, want)
		}
	}
	mism, err := sqlc.New().UserBalanceMismatches(ctx, b.db)
	if err != nil || len(mism) > 0 {
		t.Fatalf("balances differ from the ledger: %+v %v", mism, err)
	}

	admin := b.admin
	for _, c := range []struct {
		entries []billing.Entry
		want    string
	}{
		{[]billing.Entry{{UserID: u0, Amount: 1, Kind: "adjust", Ref: "a"}, {UserID: u0, Amount: 2, Kind: "adjust", Ref: "b"}}, "two ledger entries for user"},
		{[]billing.Entry{{UserID: u0, Amount: 0, Kind: "adjust", Ref: "a"}, {UserID: u1, Amount: 2, Kind: "adjust", Ref: "b"}}, "zero amount"},
		{[]billing.Entry{{UserID: u0, Amount: 1, Kind: "adjust", Ref: "a", ActorID: &admin}, {UserID: u1, Amount: 2, Kind: "adjust", Ref: "b"}}, "has an actor"},
	} {
		if _, err := post(c.entries...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: %v, want an error saying %q", c.entries, err, c.want)
		}
	}
}

// TestPostManyConcurrently: transactions posting to the same users, each in its own
// order, neither deadlock nor lose a movement: PostMany locks the users in id order.
func TestPostManyConcurrently(t *testing.T) {
	const workers, rounds = 6, 15
	b := setupRedeem(t, 12)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for r := range rounds {
				users := append([]int64(nil), b.users...)
				rng.Shuffle(len(users), func(i, j int) { users[i], users[j] = users[j], users[i] })
				entries := make([]billing.Entry, len(users))
				for i, u := range users {
					entries[i] = billing.Entry{UserID: u, Amount: -7, Kind: "usage", Ref: fmt.Sprintf("w%d-r%d-u%d", w, r, u)}
				}
				errs <- pgx.BeginFunc(ctx, b.db, func(tx pgx.Tx) error {
					_, err := billing.PostMany(ctx, tx, entries)
					return err
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range b.users {
		bal, err := sqlc.New().UserBalanceGet(ctx, b.db, u)
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(-7 * workers * rounds); bal != want {
			t.Fatalf("user %d: balance %d, want %d", u, bal, want)
		}
	}
}
