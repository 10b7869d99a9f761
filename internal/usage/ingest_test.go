package usage_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/usage"
)

// TestIngestLinksEventsToTheirDebit: every billed event is inserted already pointing at
// the ledger row of its user's debit, unbilled events at none, duplicates within a batch
// are stored and billed once, and a replay bills nothing.
func TestIngestLinksEventsToTheirDebit(t *testing.T) {
	t.Parallel()
	b := setupConsumer(t)
	ctx := context.Background()
	events := []usage.Event{
		b.event(0, "a", 100), b.event(0, "b", 20), b.event(1, "c", 7), b.event(1, "free", 0),
		b.event(0, "a", 100), // the same request twice in one batch (a replayed entry)
	}
	res, err := usage.Ingest(ctx, b.pool, events)
	must(t, err)
	if res.Inserted != 4 || res.Debits[b.users[0]] != 120 || res.Debits[b.users[1]] != 7 {
		t.Fatalf("result %+v, want 4 rows and debits 120 and 7", res)
	}
	if n := b.count(t, `SELECT count(*) FROM usage_events WHERE wallet_tx_id IS NULL`); n != 1 {
		t.Fatalf("%d events without a ledger row, want 1 (the unbilled one)", n)
	}
	if n := b.count(t, `SELECT count(DISTINCT wallet_tx_id) FROM usage_events`); n != 2 {
		t.Fatalf("events link to %d ledger rows, want 2 (one per user)", n)
	}
	b.requireLedgerConsistent(t)

	again, err := usage.Ingest(ctx, b.pool, events)
	must(t, err)
	if again.Inserted != 0 || len(again.Debits) != 0 {
		t.Fatalf("replay: %+v, want nothing stored or debited", again)
	}
	if n := b.count(t, `SELECT count(*) FROM wallet_tx WHERE kind = 'usage'`); n != 2 {
		t.Fatalf("%d usage ledger rows after the replay, want 2", n)
	}
	b.requireLedgerConsistent(t)
}

// TestIngestRaceWithAnotherIngester: an event another transaction stores while Ingest
// runs (after Ingest looked for stored events, before its insert) must not be debited
// twice: the batch fails as a whole, nothing of it is kept, and the retry bills only the
// rest.
func TestIngestRaceWithAnotherIngester(t *testing.T) {
	t.Parallel()
	b := setupConsumer(t)
	ctx := context.Background()
	raced, other := b.event(0, "raced", 500), b.event(0, "other", 3)

	// The other ingester: its row for "raced" is inserted but not committed yet.
	tx, err := b.pool.Begin(ctx)
	must(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	insertRaw(t, tx, raced)

	done := make(chan error, 1)
	go func() {
		_, err := usage.Ingest(ctx, b.pool, []usage.Event{raced, other})
		done <- err
	}()
	// Ingest has found neither event stored and waits on the uncommitted row's lock.
	deadline := time.Now().Add(10 * time.Second)
	for b.count(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Ingest never waited for the other transaction's row")
		}
		time.Sleep(5 * time.Millisecond)
	}
	must(t, tx.Commit(ctx))
	if err := <-done; err == nil {
		t.Fatal("Ingest succeeded although another ingester stored one of its events meanwhile")
	}
	if n := b.count(t, `SELECT count(*) FROM wallet_tx WHERE kind = 'usage'`); n != 0 {
		t.Fatalf("the failed batch left %d ledger rows", n)
	}

	res, err := usage.Ingest(ctx, b.pool, []usage.Event{raced, other})
	must(t, err)
	if res.Inserted != 1 || res.Debits[b.users[0]] != 3 {
		t.Fatalf("retry: %+v, want only the other event stored and debited 3", res)
	}
	b.requireLedgerConsistent(t)
}

// insertRaw stores one event row the way an ingester's insert does, without its debit.
func insertRaw(t *testing.T, tx pgx.Tx, e usage.Event) {
	t.Helper()
	p := sqlc.UsageEventInsertBatchParams{
		RequestID: []string{e.RequestID}, CreatedAt: []time.Time{e.Time}, UserID: []int64{e.UserID},
		APIKeyID: []int64{e.KeyID}, GroupID: []int64{e.GroupID}, AccountID: []int64{e.AccountID},
		Provider: []string{e.Provider}, Endpoint: []string{e.Endpoint},
		ModelRequested: []string{e.ModelRequested}, ModelUpstream: []string{e.ModelUpstream},
		InputTokens: []int64{e.Usage.Input}, OutputTokens: []int64{e.Usage.Output},
		CacheWrite5mTokens: []int64{0}, CacheWrite1hTokens: []int64{0}, CacheReadTokens: []int64{0},
		ReasoningTokens: []int64{0}, OfficialCostNano: []int64{e.OfficialNano}, BilledCostNano: []int64{e.BilledNano},
		FactorNum: []int64{1}, FactorDen: []int64{1}, PriceID: []int64{e.PriceID}, FxRateMicro: []int64{0},
		Status: []int32{200}, Stream: []bool{false}, TtfbMs: []int32{0}, DurationMs: []int32{0},
		ClientIP: []string{""}, UserAgent: []string{""}, ErrorClass: []string{""}, Attempt: []int32{1},
		WalletTxID: []int64{0},
	}
	rows, err := sqlc.New().UsageEventInsertBatch(context.Background(), tx, p)
	if err != nil || len(rows) != 1 {
		t.Fatalf("insert raw event: %d rows, %v", len(rows), err)
	}
}
