package usage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/limit"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/internal/usage"
)

// consumerBundle is what each consumer test works with: a database holding two users
// with keys, an account and a price, and a Redis namespace of its own.
type consumerBundle struct {
	pool    *pgxpool.Pool
	rdb     *redis.Client
	prefix  string
	users   [2]int64
	keys    [2]int64
	group   int64
	account int64
	price   int64
	log     *slog.Logger
}

func setupConsumer(t testing.TB) *consumerBundle {
	t.Helper()
	ctx := context.Background()
	b := &consumerBundle{pool: testenv.DB(t), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	b.rdb, b.prefix = testenv.Redis(t)
	q := sqlc.New()
	g, err := q.GroupInsert(ctx, b.pool, sqlc.GroupInsertParams{Name: "default", IsDefault: true})
	must(t, err)
	b.group = g.ID
	for i := range b.users {
		u, err := q.UserInsert(ctx, b.pool, sqlc.UserInsertParams{
			Email: fmt.Sprintf("u%d@example.com", i), PasswordHash: "x", Role: "user", GroupID: g.ID,
		})
		must(t, err)
		k, err := q.APIKeyInsert(ctx, b.pool, sqlc.APIKeyInsertParams{
			UserID: u.ID, Name: "k", DisplayPrefix: "tg-test", Hash: []byte(fmt.Sprintf("hash-%d", i)),
		})
		must(t, err)
		b.users[i], b.keys[i] = u.ID, k.ID
	}
	a, err := q.AccountInsert(ctx, b.pool, sqlc.AccountInsertParams{
		Name: "a", Provider: "anthropic", Kind: "api_key", BaseURL: "http://127.0.0.1:1",
		SecretEnc: []byte("sealed"), Weight: 1, Models: []string{}, ModelMap: []byte("{}"),
	})
	must(t, err)
	b.account = a.ID
	p, err := q.PriceInsert(ctx, b.pool, sqlc.PriceInsertParams{
		Provider: "anthropic", Pattern: "claude-test", Match: "exact", EffectiveFrom: time.Now().Add(-time.Hour),
		InputPico: 3000, OutputPico: 15000,
	})
	must(t, err)
	b.price = p.ID
	return b
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// event returns a valid event of user i (0 or 1) billed billed nano-USD.
func (b *consumerBundle) event(i int, rid string, billed int64) usage.Event {
	return usage.Event{
		RequestID: rid, Time: time.Now().Add(-time.Second).UTC(), UserID: b.users[i], KeyID: b.keys[i],
		GroupID: b.group, AccountID: b.account, Provider: "anthropic", Endpoint: "/v1/messages",
		ModelRequested: "claude-test", ModelUpstream: "claude-test",
		Usage:        billing.Usage{Input: 100, Output: 10},
		OfficialNano: billed, BilledNano: billed, FactorNum: 1, FactorDen: 1, PriceID: b.price,
		Status: 200, Attempt: 1,
	}
}

// add appends events to the stream the way the proxy does.
func (b *consumerBundle) add(t *testing.T, events ...usage.Event) {
	t.Helper()
	for _, e := range events {
		raw, err := json.Marshal(e)
		must(t, err)
		b.addRaw(t, usage.StreamField, string(raw))
	}
}

func (b *consumerBundle) addRaw(t *testing.T, field, value string) string {
	t.Helper()
	id, err := b.rdb.XAdd(context.Background(), &redis.XAddArgs{
		Stream: usage.StreamKey(b.prefix), Values: []any{field, value},
	}).Result()
	must(t, err)
	return id
}

func (b *consumerBundle) consumer(name string, opts ...usage.ConsumerOption) *usage.Consumer {
	return usage.NewConsumer(b.rdb, b.pool, b.prefix, name, b.log, opts...)
}

func (b *consumerBundle) count(t *testing.T, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	must(t, b.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// requireLedgerConsistent checks each user's cached balance against the ledger, and that
// every debit matches the events linked to it.
func (b *consumerBundle) requireLedgerConsistent(t *testing.T) {
	t.Helper()
	mism, err := sqlc.New().UserBalanceMismatches(context.Background(), b.pool)
	must(t, err)
	if len(mism) > 0 {
		t.Fatalf("balance differs from ledger: %+v", mism)
	}
	if n := b.count(t, `SELECT count(*) FROM wallet_tx w WHERE w.kind = 'usage' AND -w.amount_nano <>
		(SELECT coalesce(sum(billed_cost_nano), 0) FROM usage_events e WHERE e.wallet_tx_id = w.id)`); n != 0 {
		t.Fatalf("%d usage debits differ from the events they paid for", n)
	}
}

func (b *consumerBundle) requireStreamSettled(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	pending, err := b.rdb.XPending(ctx, usage.StreamKey(b.prefix), usage.ConsumerGroup).Result()
	must(t, err)
	if pending.Count != 0 {
		t.Fatalf("%d entries still pending", pending.Count)
	}
	if n := b.rdb.XLen(ctx, usage.StreamKey(b.prefix)).Val(); n != 0 {
		t.Fatalf("%d entries left in the stream after acknowledgement", n)
	}
}

func TestConsumerIngestsBatchAndIgnoresReplay(t *testing.T) {
	t.Parallel()
	b := setupConsumer(t)
	ctx := context.Background()
	events := []usage.Event{
		b.event(0, "r1", 1_000), b.event(0, "r2", 2_500), b.event(1, "r3", 700),
		b.event(1, "r4", 0), // consumed tokens but free: stored, not debited
	}
	b.add(t, events...)
	c := b.consumer("w1")

	n, err := c.ProcessOnce(ctx)
	must(t, err)
	if n != 4 {
		t.Fatalf("settled %d entries, want 4", n)
	}
	if got := b.count(t, "SELECT count(*) FROM usage_events"); got != 4 {
		t.Fatalf("usage_events has %d rows, want 4", got)
	}
	for i, want := range []int64{-3_500, -700} {
		if got := b.count(t, "SELECT count(*) FROM wallet_tx WHERE user_id = $1 AND kind = 'usage'", b.users[i]); got != 1 {
			t.Fatalf("user %d has %d usage debits, want one per batch", i, got)
		}
		if got := b.count(t, "SELECT sum(amount_nano) FROM wallet_tx WHERE user_id = $1", b.users[i]); got != want {
			t.Fatalf("user %d debited %d, want %d", i, got, want)
		}
		if got := b.count(t, "SELECT balance_nano FROM users WHERE id = $1", b.users[i]); got != want {
			t.Fatalf("user %d balance %d, want %d", i, got, want)
		}
	}
	b.requireLedgerConsistent(t)
	b.requireStreamSettled(t)
	if s := c.Stats(); s.Ingested != 4 || s.Batches != 1 || s.Lag <= 0 {
		t.Fatalf("stats %+v, want 4 ingested in 1 batch with a lag", s)
	}

	// The proxy (or a crash between commit and ack) delivers the same events again.
	b.add(t, events...)
	n, err = c.ProcessOnce(ctx)
	must(t, err)
	if n != 4 {
		t.Fatalf("replay: settled %d entries, want 4", n)
	}
	if got := b.count(t, "SELECT count(*) FROM usage_events"); got != 4 {
		t.Fatalf("replay: usage_events has %d rows, want 4", got)
	}
	if got := b.count(t, "SELECT count(*) FROM wallet_tx"); got != 2 {
		t.Fatalf("replay: %d ledger rows, want the 2 from the first batch", got)
	}
	b.requireLedgerConsistent(t)
	b.requireStreamSettled(t)
	if s := c.Stats(); s.Ingested != 4 {
		t.Fatalf("replay counted as ingested: %+v", s)
	}
}

func TestConsumerClaimsEntriesOfCrashedConsumer(t *testing.T) {
	t.Parallel()
	b := setupConsumer(t)
	ctx := context.Background()
	// Consumer A joins the group and reads three entries, then dies before acknowledging.
	crashed := b.consumer("a")
	_, err := crashed.ProcessOnce(ctx) // creates the group on an empty stream
	must(t, err)
	b.add(t, b.event(0, "c1", 10), b.event(0, "c2", 20), b.event(1, "c3", 30))
	read, err := b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: usage.ConsumerGroup, Consumer: "a", Streams: []string{usage.StreamKey(b.prefix), ">"}, Block: -1,
	}).Result()
	must(t, err)
	if len(read[0].Messages) != 3 {
		t.Fatalf("consumer a read %d entries, want 3", len(read[0].Messages))
	}

	const idle = 300 * time.Millisecond
	survivor := b.consumer("b", usage.WithClaimIdle(idle))
	n, err := survivor.ProcessOnce(ctx)
	must(t, err)
	if n != 0 {
		t.Fatalf("took over %d entries before they were idle for %v", n, idle)
	}
	time.Sleep(idle + 50*time.Millisecond)
	n, err = survivor.ProcessOnce(ctx)
	must(t, err)
	if n != 3 {
		t.Fatalf("claimed %d entries, want 3", n)
	}
	if got := b.count(t, "SELECT count(*) FROM usage_events"); got != 3 {
		t.Fatalf("usage_events has %d rows, want 3", got)
	}
	if got := b.count(t, "SELECT -sum(amount_nano) FROM wallet_tx"); got != 60 {
		t.Fatalf("debited %d, want 60", got)
	}
	b.requireLedgerConsistent(t)
	b.requireStreamSettled(t)
}

func TestConsumerDeadLettersBadEntries(t *testing.T) {
	t.Parallel()
	b := setupConsumer(t)
	ctx := context.Background()
	b.add(t, b.event(0, "ok1", 100))
	notJSON := b.addRaw(t, usage.StreamField, "{not json")
	wrongField := b.addRaw(t, "x", "{}")
	incomplete := b.event(0, "", 5) // no request id
	unknownUser := b.event(1, "ghost", 5)
	unknownUser.UserID = 999_999 // passes decoding, refused by the reference check
	b.add(t, incomplete, unknownUser, b.event(1, "ok2", 200))

	n, err := b.consumer("w").ProcessOnce(ctx)
	must(t, err)
	if n != 6 {
		t.Fatalf("settled %d entries, want 6", n)
	}
	var rids []string
	rows, err := b.pool.Query(ctx, "SELECT request_id FROM usage_events ORDER BY request_id")
	must(t, err)
	for rows.Next() {
		var r string
		must(t, rows.Scan(&r))
		rids = append(rids, r)
	}
	must(t, rows.Err())
	if strings.Join(rids, ",") != "ok1,ok2" {
		t.Fatalf("stored %v, want the two good events", rids)
	}
	b.requireLedgerConsistent(t)
	b.requireStreamSettled(t)

	dead, err := b.rdb.XRange(ctx, usage.DeadLetterKey(b.prefix), "-", "+").Result()
	must(t, err)
	if len(dead) != 4 {
		t.Fatalf("dead-letter stream has %d entries, want 4: %v", len(dead), dead)
	}
	byID := map[string]redis.XMessage{}
	for _, d := range dead {
		if d.Values["err"] == "" {
			t.Errorf("dead entry %v has no reason", d.Values)
		}
		byID[d.Values["id"].(string)] = d
	}
	for _, id := range []string{notJSON, wrongField} {
		if _, ok := byID[id]; !ok {
			t.Errorf("entry %s is not in the dead-letter stream", id)
		}
	}
	if d := byID[notJSON]; d.Values[usage.StreamField] != "{not json" {
		t.Errorf("dead entry lost its payload: %v", d.Values)
	}
}

func TestConsumerKeepsEntriesPendingWhileDatabaseIsDown(t *testing.T) {
	t.Parallel()
	b := setupConsumer(t)
	ctx := context.Background()
	b.add(t, b.event(0, "d1", 10), b.event(1, "d2", 20))

	down, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=2")
	must(t, err)
	defer down.Close()
	c := usage.NewConsumer(b.rdb, down, b.prefix, "w1", b.log)
	for range 2 { // the retry of the held batch fails the same way
		if n, err := c.ProcessOnce(ctx); err == nil || n != 0 {
			t.Fatalf("ProcessOnce = %d, %v; want an error", n, err)
		}
	}
	pending, err := b.rdb.XPending(ctx, usage.StreamKey(b.prefix), usage.ConsumerGroup).Result()
	must(t, err)
	if pending.Count != 2 || pending.Consumers["w1"] != 2 {
		t.Fatalf("pending %+v, want both entries pending with w1", pending)
	}
	if n := b.rdb.XLen(ctx, usage.StreamKey(b.prefix)).Val(); n != 2 {
		t.Fatalf("stream has %d entries, want 2", n)
	}

	// Nothing was lost: another worker picks them up once they are idle.
	time.Sleep(100 * time.Millisecond)
	n, err := b.consumer("w2", usage.WithClaimIdle(50*time.Millisecond)).ProcessOnce(ctx)
	must(t, err)
	if n != 2 || b.count(t, "SELECT count(*) FROM usage_events") != 2 {
		t.Fatalf("recovered %d entries, want 2 stored", n)
	}
	b.requireLedgerConsistent(t)
	b.requireStreamSettled(t)
}

func TestConsumerRun(t *testing.T) {
	t.Parallel()
	b := setupConsumer(t)
	reg := prometheus.NewRegistry()
	c := b.consumer("w", usage.WithBlock(50*time.Millisecond), usage.WithBatchSize(2), usage.WithMetrics(reg))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	b.add(t, b.event(0, "run1", 1), b.event(0, "run2", 2), b.event(1, "run3", 3))
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().Ingested < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("ingested %+v after 10 s, want 3 events", c.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if s := c.Stats(); s.Batches != 2 {
		t.Fatalf("stats %+v, want 3 events in 2 batches of at most 2", s)
	}
	consumers, err := b.rdb.XInfoConsumers(context.Background(), usage.StreamKey(b.prefix), usage.ConsumerGroup).Result()
	must(t, err)
	if len(consumers) != 0 {
		t.Errorf("consumers %+v still in the group after a clean stop", consumers)
	}
	if got := counterValue(t, reg, "tollgate_usage_ingested_total"); got != 3 {
		t.Fatalf("tollgate_usage_ingested_total = %v, want 3", got)
	}
	b.requireLedgerConsistent(t)
	b.requireStreamSettled(t)
}

// TestConsumerRunGathersBatchesUnderLoad: the first entry after a quiet spell is stored
// at once, and a steady trickle of entries is then stored in a few batches (one per
// linger), not a transaction per entry or two. With the linger off (0) the same trickle
// takes a batch per entry or two, which this test would reject.
func TestConsumerRunGathersBatchesUnderLoad(t *testing.T) {
	t.Parallel()
	b := setupConsumer(t)
	const linger = 400 * time.Millisecond
	c := b.consumer("w", usage.WithBlock(50*time.Millisecond), usage.WithLinger(linger))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitIngested := func(n int64) time.Duration {
		t.Helper()
		start := time.Now()
		for c.Stats().Ingested < n {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("ingested %+v after 10 s, want %d events", c.Stats(), n)
			}
			time.Sleep(2 * time.Millisecond)
		}
		return time.Since(start)
	}

	b.add(t, b.event(0, "first", 1))
	if took := waitIngested(1); took >= linger {
		t.Fatalf("the first entry on an idle stream took %v to store; it should not wait for the linger (%v)", took, linger)
	}
	// 60 entries over about 600 ms: without the pause each would find the consumer idle.
	time.Sleep(linger) // the pause after the first batch is over
	before := c.Stats().Batches
	for i := range 60 {
		b.add(t, b.event(i%2, fmt.Sprintf("trickle-%d", i), 1))
		time.Sleep(10 * time.Millisecond)
	}
	waitIngested(61)
	if n := c.Stats().Batches - before; n > 5 {
		t.Fatalf("60 entries arriving over ~600 ms were stored in %d batches; with a %v linger they should take about 3", n, linger)
	}
	b.requireLedgerConsistent(t)
}

// counterValue reads a counter from the registry, as a scrape would.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	must(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("%s is not registered", name)
	return 0
}

// TestConsumerRunRidesOutDatabaseOutage cuts PostgreSQL off while Run holds a batch:
// nothing is acknowledged during the outage, and the same consumer stores the batch once
// the database is back.
func TestConsumerRunRidesOutDatabaseOutage(t *testing.T) {
	t.Parallel()
	b := setupConsumer(t)
	ctx := context.Background()
	var dbname string
	must(t, b.pool.QueryRow(ctx, "SELECT current_database()").Scan(&dbname))
	admin, err := pgxpool.New(ctx, testenv.DatabaseURL(t))
	must(t, err)
	defer admin.Close()
	setConnections := func(allow bool) {
		t.Helper()
		_, err := admin.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %q ALLOW_CONNECTIONS %t`, dbname, allow))
		must(t, err)
		if !allow {
			_, err = admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", dbname)
			must(t, err)
		}
	}

	setConnections(false)
	b.add(t, b.event(0, "o1", 10), b.event(1, "o2", 20))
	c := b.consumer("w", usage.WithBlock(50*time.Millisecond))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()

	time.Sleep(500 * time.Millisecond) // a few failed attempts
	pending, err := b.rdb.XPending(ctx, usage.StreamKey(b.prefix), usage.ConsumerGroup).Result()
	must(t, err)
	if pending.Count != 2 || b.rdb.XLen(ctx, usage.StreamKey(b.prefix)).Val() != 2 || c.Stats().Batches != 0 {
		t.Fatalf("during the outage: pending %+v, stats %+v; want both entries pending and nothing stored", pending, c.Stats())
	}

	setConnections(true)
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().Ingested < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v 10 s after the database came back", c.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	must(t, <-done)
	b.requireLedgerConsistent(t)
	b.requireStreamSettled(t)
}

// TestConsumerResetsCountersOfLateEvents: once a replayed event (appended Late: no
// completion moved its counters) is stored, the consumer deletes its user's balance
// snapshot and its key's and user's spend counters, so that the next admission reloads
// them from the ledger, which now holds it. An event its completion appended leaves
// them alone: they moved already.
func TestConsumerResetsCountersOfLateEvents(t *testing.T) {
	t.Parallel()
	b := setupConsumer(t)
	ctx := context.Background()
	late, onTime := b.event(0, "late", 1_000), b.event(1, "on-time", 700)
	keys := func(e usage.Event) []string { return limit.CounterKeys(b.prefix, e.UserID, e.KeyID, e.Time) }
	for _, k := range append(keys(late), keys(onTime)...) {
		must(t, b.rdb.Set(ctx, k, "5", time.Hour).Err())
	}
	must(t, usage.Append(ctx, b.rdb, b.prefix, []usage.Event{late}))
	b.add(t, onTime)
	// Its debit waits in the user's pending sum until it is stored.
	pend := limit.PendingKey(b.prefix, late.UserID)
	if got, err := b.rdb.Get(ctx, pend).Int64(); err != nil || got != late.BilledNano {
		t.Fatalf("pending sum %d (%v), want %d", got, err, late.BilledNano)
	}

	n, err := b.consumer("w1").ProcessOnce(ctx)
	must(t, err)
	if n != 2 {
		t.Fatalf("settled %d entries, want 2", n)
	}
	if got := b.count(t, "SELECT count(*) FROM usage_events"); got != 2 {
		t.Fatalf("usage_events has %d rows, want 2", got)
	}
	if left := b.rdb.Exists(ctx, keys(late)...).Val(); left != 0 {
		t.Fatalf("%d of the late event's 4 counters are left", left)
	}
	if left := b.rdb.Exists(ctx, keys(onTime)...).Val(); left != 4 {
		t.Fatalf("the on-time event's counters were reset: %d of 4 left", left)
	}
	if left := b.rdb.Exists(ctx, pend).Val(); left != 0 {
		t.Fatal("the pending sum is left after the late event was stored")
	}
	b.requireLedgerConsistent(t)
	b.requireStreamSettled(t)
}
