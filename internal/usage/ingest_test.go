package usage_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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
	b.awaitLockWait(t, "Ingest never waited for the other transaction's row")
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
// awaitLockWait waits until a session of the test database waits for a lock; failing
// says what did not happen.
func (b *consumerBundle) awaitLockWait(t *testing.T, failing string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.count(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal(failing)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

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

// TestIngestRefusesUnknownReferences: an event naming a user, key, group, account or
// price that does not exist refuses its batch (migration 0004 checks the references once
// per batch instead of by foreign keys), and nothing of the batch is stored or debited.
func TestIngestRefusesUnknownReferences(t *testing.T) {
	t.Parallel()
	b := setupConsumer(t)
	ctx := context.Background()
	const ghost = 999_999
	for _, c := range []struct {
		table string
		spoil func(*usage.Event)
	}{
		{"users", func(e *usage.Event) { e.UserID = ghost }},
		{"api_keys", func(e *usage.Event) { e.KeyID = ghost }},
		{"groups", func(e *usage.Event) { e.GroupID = ghost }},
		{"accounts", func(e *usage.Event) { e.AccountID = ghost }},
		{"prices", func(e *usage.Event) { e.PriceID = ghost }},
	} {
		bad := b.event(1, "bad-"+c.table, 5)
		c.spoil(&bad)
		_, err := usage.Ingest(ctx, b.pool, []usage.Event{b.event(0, "good-"+c.table, 10), bad})
		if err == nil || !strings.Contains(err.Error(), c.table+" id 999999") {
			t.Fatalf("%s: Ingest returned %v, want the unknown %s id named", c.table, err, c.table)
		}
	}
	if n := b.count(t, `SELECT count(*) FROM usage_events`); n != 0 {
		t.Fatalf("%d events stored from refused batches", n)
	}
	if n := b.count(t, `SELECT count(*) FROM wallet_tx`); n != 0 {
		t.Fatalf("%d ledger rows from refused batches", n)
	}
	b.requireLedgerConsistent(t)
}

// TestReferencedRowsCannotBeDeleted: a user, key, group, account or price that usage
// events name cannot be deleted (the triggers of migration 0004 keep what the foreign
// keys guaranteed); one that no event names can. An ingestion that has checked its
// references holds them: a DELETE waits for it and then fails on the rows it inserted.
func TestReferencedRowsCannotBeDeleted(t *testing.T) {
	t.Parallel()
	b := setupConsumer(t)
	ctx := context.Background()
	_, err := usage.Ingest(ctx, b.pool, []usage.Event{b.event(0, "a", 10)})
	must(t, err)
	for _, c := range []struct {
		table string
		id    int64
	}{{"users", b.users[0]}, {"api_keys", b.keys[0]}, {"groups", b.group}, {"accounts", b.account}, {"prices", b.price}} {
		_, err := b.pool.Exec(ctx, "DELETE FROM "+c.table+" WHERE id = $1", c.id)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23503" {
			t.Fatalf("DELETE FROM %s of a referenced row: %v, want a foreign key violation (23503)", c.table, err)
		}
	}
	// The second user has no events: its key and then the user can go.
	if _, err := b.pool.Exec(ctx, "DELETE FROM api_keys WHERE id = $1", b.keys[1]); err != nil {
		t.Fatalf("delete an unreferenced key: %v", err)
	}
	if _, err := b.pool.Exec(ctx, "DELETE FROM users WHERE id = $1", b.users[1]); err != nil {
		t.Fatalf("delete an unreferenced user: %v", err)
	}

	// The race the FOR KEY SHARE locks close: a price checked by an ingestion in flight is
	// deleted before the ingestion's rows are committed.
	q := sqlc.New()
	p, err := q.PriceInsert(ctx, b.pool, sqlc.PriceInsertParams{
		Provider: "anthropic", Pattern: "claude-other", Match: "exact", EffectiveFrom: time.Now().Add(-time.Hour),
		InputPico: 1, OutputPico: 1,
	})
	must(t, err)
	tx, err := b.pool.Begin(ctx)
	must(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	found, err := q.UsageEventReferencesFound(ctx, tx, sqlc.UsageEventReferencesFoundParams{PriceIds: []int64{p.ID}})
	must(t, err)
	if len(found.Prices) != 1 {
		t.Fatalf("the new price was not found: %+v", found)
	}
	deleted := make(chan error, 1)
	go func() {
		_, err := b.pool.Exec(ctx, "DELETE FROM prices WHERE id = $1", p.ID)
		deleted <- err
	}()
	b.awaitLockWait(t, "the DELETE did not wait for the ingestion's lock on the price")
	e := b.event(0, "late", 0)
	e.PriceID = p.ID
	insertRaw(t, tx, e)
	must(t, tx.Commit(ctx))
	var pgErr *pgconn.PgError
	if err := <-deleted; !errors.As(err, &pgErr) || pgErr.Code != "23503" {
		t.Fatalf("DELETE of a price an ingestion locked and then used: %v, want a foreign key violation", err)
	}
}

// TestBillingRecordsAreAppendOnly: a stored usage event cannot be changed or removed, and
// neither usage_events nor the ledger can be truncated (migration 0005), so a debit stays
// the sum of the events linked to it.
func TestBillingRecordsAreAppendOnly(t *testing.T) {
	t.Parallel()
	b := setupConsumer(t)
	ctx := context.Background()
	_, err := usage.Ingest(ctx, b.pool, []usage.Event{b.event(0, "a", 10), b.event(0, "b", 20)})
	must(t, err)
	for _, stmt := range []string{
		"UPDATE usage_events SET billed_cost_nano = 0 WHERE request_id = 'a'",
		"UPDATE usage_events SET wallet_tx_id = NULL",
		"DELETE FROM usage_events WHERE request_id = 'b'",
		"TRUNCATE usage_events",
		"TRUNCATE wallet_tx CASCADE",
	} {
		if _, err := b.pool.Exec(ctx, stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Fatalf("%s: %v, want it refused as append-only", stmt, err)
		}
	}
	if n := b.count(t, `SELECT sum(billed_cost_nano) FROM usage_events WHERE wallet_tx_id IS NOT NULL`); n != 30 {
		t.Fatalf("events hold %d nano-USD linked to debits, want 30", n)
	}
	b.requireLedgerConsistent(t)
}

// TestConcurrentIngestersKeepTheRollup: ingesters storing batches of two users at once
// (their debits and the hourly rows they share are locked in one order) neither deadlock
// nor lose an addition: the hourly rollup ends equal to the events' sums.
func TestConcurrentIngestersKeepTheRollup(t *testing.T) {
	t.Parallel()
	b := setupConsumer(t)
	ctx := context.Background()
	const ingesters, batches, size = 4, 25, 8
	errs := make(chan error, ingesters)
	for g := range ingesters {
		go func() {
			for n := range batches {
				events := make([]usage.Event, 0, size)
				for i := range size {
					// Both users in every batch, listed in a different order per ingester.
					e := b.event((g+i)%2, fmt.Sprintf("g%d-b%d-e%d", g, n, i), int64(1+i))
					e.Time = time.Now().UTC()
					events = append(events, e)
				}
				if _, err := usage.Ingest(ctx, b.pool, events); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range ingesters {
		must(t, <-errs)
	}
	var events, rolled, requests int64
	must(t, b.pool.QueryRow(ctx, `SELECT sum(billed_cost_nano), count(*) FROM usage_events`).Scan(&events, &requests))
	must(t, b.pool.QueryRow(ctx, `SELECT sum(billed_cost_nano) FROM usage_hourly`).Scan(&rolled))
	if want := int64(ingesters * batches * (size * (size + 1) / 2)); events != want || rolled != want || requests != ingesters*batches*size {
		t.Fatalf("events %d (%d requests), hourly rollup %d; want %d in both", events, requests, rolled, want)
	}
	if n := b.count(t, `SELECT sum(requests) FROM usage_hourly`); n != requests {
		t.Fatalf("the hourly rollup counts %d requests, the events %d", n, requests)
	}
	b.requireLedgerConsistent(t)
}

// TestBillingKeysIgnoreTheLocale: the unique indexes every ingested batch looks up and
// inserts into — usage events' request id, the ledger's (kind, ref) — compare bytes
// whatever the database's default collation (migration 0007 measures what a language's
// rules cost there). The tests' cluster has no locale, so ordering cannot tell; the
// columns' collation can.
func TestBillingKeysIgnoreTheLocale(t *testing.T) {
	t.Parallel()
	b := setupConsumer(t)
	for _, c := range [][2]string{{"usage_events", "request_id"}, {"wallet_tx", "kind"}, {"wallet_tx", "ref"}} {
		var coll string
		must(t, b.pool.QueryRow(context.Background(), `SELECT coalesce(collation_name, '(default)') FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2`, c[0], c[1]).Scan(&coll))
		if coll != "C" {
			t.Fatalf("%s.%s has collation %s, want C", c[0], c[1], coll)
		}
	}
}

// BenchmarkIngest stores batches of 500 events from one user, as the bench's single demo
// user sends them, and from 250 users (two events each), as a busy installation does:
// each user in a batch gets a ledger row and a balance update.
func BenchmarkIngest(b *testing.B) {
	for _, users := range []int{1, 250} {
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			c := setupConsumer(b)
			ctx := context.Background()
			var ids, keys []int64
			rows, err := c.pool.Query(ctx, `WITH u AS (
				INSERT INTO users (email, password_hash, role, group_id)
				SELECT 'bench' || g || '@example.com', 'x', 'user', $1 FROM generate_series(1, $2) g RETURNING id)
				INSERT INTO api_keys (user_id, name, display_prefix, hash)
				SELECT id, 'k', 'tg-bench', sha256(id::text::bytea) FROM u RETURNING user_id, id`, c.group, users)
			must(b, err)
			for rows.Next() {
				var u, k int64
				must(b, rows.Scan(&u, &k))
				ids, keys = append(ids, u), append(keys, k)
			}
			must(b, rows.Err())
			b.ResetTimer()
			for n := range b.N {
				events := make([]usage.Event, 500)
				for i := range events {
					events[i] = c.event(0, fmt.Sprintf("b%d-%d", n, i), 1_000)
					events[i].UserID, events[i].KeyID = ids[i%users], keys[i%users]
				}
				if _, err := usage.Ingest(ctx, c.pool, events); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*500), "µs/event")
		})
	}
}
