package usage

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/limit"
)

// DeadLetterKey is the stream where the consumer sets aside entries it can never store
// (undecodable, or rejected by the database), with the reason, for an operator to inspect.
func DeadLetterKey(prefix string) string { return StreamKey(prefix) + ":dead" }

const (
	retryBackoffMax = 5 * time.Second
	// settleTimeout bounds storing and acknowledging one batch, which goes on after a
	// shutdown has begun so that the batch in flight is finished rather than abandoned.
	settleTimeout = 15 * time.Second
)

// Consumer moves usage events from the Redis stream into PostgreSQL. Every worker joins
// the same consumer group, so each entry goes to one of them. An entry is acknowledged and
// deleted only after the transaction that stored it has committed: a crash anywhere before
// that leaves it pending, and once it has sat idle past the claim timeout XAUTOCLAIM hands
// it to a live consumer. Ingest is idempotent by request id, so an entry delivered twice is
// still billed once.
type Consumer struct {
	rdb       redis.UniversalClient
	pool      *pgxpool.Pool
	log       *slog.Logger
	prefix    string
	stream    string
	dead      string
	name      string
	batch     int
	block     time.Duration
	claimIdle time.Duration
	linger    time.Duration
	metrics   *consumerMetrics

	// Touched only by the goroutine in Run or ProcessOnce.
	groupReady bool
	claimFrom  string           // XAUTOCLAIM cursor; "0-0" starts a new scan of the pending list
	claimedAt  time.Time        // last XAUTOCLAIM
	retry      []redis.XMessage // read but not yet stored; retried before anything new is read

	ingested, batches, deadLettered, lagNanos atomic.Int64
}

// ConsumerOption tunes a Consumer.
type ConsumerOption func(*Consumer)

// WithBatchSize caps the entries stored in one transaction (default 500).
func WithBatchSize(n int) ConsumerOption { return func(c *Consumer) { c.batch = n } }

// WithBlock sets how long Run waits on the stream for new entries (default 1 s).
func WithBlock(d time.Duration) ConsumerOption { return func(c *Consumer) { c.block = d } }

// WithLinger sets how long Run pauses after a batch smaller than the batch size before
// it reads again (default 50 ms), so that under load entries gather into batches of
// hundreds instead of one transaction — a commit, a ledger row per user and the
// stream round trips — for every few. An idle stream is read at once: the first entry
// after a quiet spell is stored without waiting. 0 disables the pause.
func WithLinger(d time.Duration) ConsumerOption { return func(c *Consumer) { c.linger = d } }

// WithClaimIdle sets how long an entry must sit unacknowledged in another consumer's
// pending list before this one takes it over (default 30 s). Shorter risks storing an
// entry twice (harmless, but wasted work) while its first reader is merely slow.
func WithClaimIdle(d time.Duration) ConsumerOption { return func(c *Consumer) { c.claimIdle = d } }

// WithMetrics registers the consumer's Prometheus metrics on reg.
func WithMetrics(reg prometheus.Registerer) ConsumerOption {
	return func(c *Consumer) { c.metrics = newConsumerMetrics(reg) }
}

// NewConsumer returns a consumer named name (unique per process, e.g. hostname-pid) of
// the usage stream under prefix.
func NewConsumer(rdb redis.UniversalClient, pool *pgxpool.Pool, prefix, name string, log *slog.Logger, opts ...ConsumerOption) *Consumer {
	c := &Consumer{
		rdb: rdb, pool: pool, log: log, name: name, prefix: prefix,
		stream: StreamKey(prefix), dead: DeadLetterKey(prefix),
		batch: 500, block: time.Second, claimIdle: 30 * time.Second, linger: 50 * time.Millisecond,
		claimFrom: "0-0",
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// ConsumerStats are the consumer's counters since start, for health pages and logs.
type ConsumerStats struct {
	Ingested     int64         // events newly stored (replays not counted)
	Batches      int64         // batches stored and acknowledged
	DeadLettered int64         // entries set aside in the dead-letter stream
	Lag          time.Duration // now − time of the newest event of the last batch, when it was stored
}

// Stats returns the counters; safe to call from any goroutine.
func (c *Consumer) Stats() ConsumerStats {
	return ConsumerStats{
		Ingested: c.ingested.Load(), Batches: c.batches.Load(),
		DeadLettered: c.deadLettered.Load(), Lag: time.Duration(c.lagNanos.Load()),
	}
}

// Run consumes the stream until ctx is done, then finishes the read and the batch in
// flight and returns nil. Failures (PostgreSQL or Redis unavailable) are logged and
// retried with a backoff of up to 5 s; the entries concerned stay pending, never
// acknowledged early.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.leave(context.WithoutCancel(ctx))
	var backoff time.Duration
	for ctx.Err() == nil {
		claim := c.claimFrom != "0-0" || time.Since(c.claimedAt) >= c.claimIdle/2
		n, err := c.pass(ctx, c.block, claim)
		if err == nil {
			if backoff > 0 {
				c.log.Info("usage ingestion recovered")
			}
			backoff = 0
			if n > 0 && n < c.batch && c.linger > 0 {
				pause(ctx, c.linger) // let the next batch gather
			}
			continue
		}
		if ctx.Err() != nil {
			break
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), retryBackoffMax)
		c.log.Warn("usage ingestion failed; will retry", "err", err, "pending", len(c.retry), "retry_in", backoff)
		pause(ctx, backoff)
	}
	return nil
}

// pause waits for d or until ctx is done.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ProcessOnce does one pass without waiting for new entries: it retries a batch that
// failed before, or else claims idle entries and reads new ones, then stores and
// acknowledges them. It returns how many entries it settled (stored or dead-lettered).
func (c *Consumer) ProcessOnce(ctx context.Context) (int, error) {
	return c.pass(ctx, -1, true)
}

// pass reads one batch (block < 0: don't wait) and settles it.
func (c *Consumer) pass(ctx context.Context, block time.Duration, claim bool) (int, error) {
	msgs := c.retry
	if len(msgs) == 0 {
		var err error
		if msgs, err = c.fetch(ctx, block, claim); err != nil || len(msgs) == 0 {
			return 0, err
		}
	}
	// Entries read are this consumer's to finish, even if ctx was cancelled meanwhile.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if err := c.settle(sctx, msgs); err != nil {
		c.retry = msgs
		if c.metrics != nil {
			c.metrics.failures.Inc()
		}
		return 0, err
	}
	c.retry = nil
	return len(msgs), nil
}

// fetch claims entries idle in other consumers' pending lists (a crashed worker's) when
// claim is set, then reads new entries up to the batch size.
func (c *Consumer) fetch(ctx context.Context, block time.Duration, claim bool) ([]redis.XMessage, error) {
	if !c.groupReady {
		// Start at 0: entries the proxy appended before any worker ran belong to the group.
		err := c.rdb.XGroupCreateMkStream(ctx, c.stream, ConsumerGroup, "0").Err()
		if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
			return nil, fmt.Errorf("create consumer group %s on %s: %w", ConsumerGroup, c.stream, err)
		}
		c.groupReady = true
	}
	var msgs []redis.XMessage
	if claim {
		claimed, next, err := c.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: c.stream, Group: ConsumerGroup, Consumer: c.name,
			MinIdle: c.claimIdle, Start: c.claimFrom, Count: int64(c.batch),
		}).Result()
		if err != nil {
			return nil, c.redisErr("claim idle entries of", err)
		}
		c.claimFrom, c.claimedAt = next, time.Now()
		msgs = claimed
	}
	n := c.batch - len(msgs)
	if n <= 0 {
		return msgs, nil
	}
	if len(msgs) > 0 {
		block = -1 // claimed entries are waiting: don't wait for new ones
	}
	// The read is not cancelled with ctx: a read aborted mid-way may still have had entries
	// delivered, which would then sit pending until another consumer claims them. It
	// returns within the block time anyway.
	streams, err := c.rdb.XReadGroup(context.WithoutCancel(ctx), &redis.XReadGroupArgs{
		Group: ConsumerGroup, Consumer: c.name, Streams: []string{c.stream, ">"},
		Count: int64(n), Block: block,
	}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		if len(msgs) > 0 {
			return msgs, nil // settle what was claimed; the read error recurs next pass if real
		}
		return nil, c.redisErr("read", err)
	}
	for _, s := range streams {
		msgs = append(msgs, s.Messages...)
	}
	return msgs, nil
}

// leave removes this consumer from the group when nothing is pending with it, so that
// the group does not collect a consumer per process ever started. A consumer with pending
// entries stays: deleting it would drop them from the pending list.
func (c *Consumer) leave(ctx context.Context) {
	if len(c.retry) > 0 || !c.groupReady {
		return
	}
	pending, err := c.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: c.stream, Group: ConsumerGroup, Consumer: c.name, Start: "-", End: "+", Count: 1,
	}).Result()
	if err != nil || len(pending) > 0 {
		return
	}
	if err := c.rdb.XGroupDelConsumer(ctx, c.stream, ConsumerGroup, c.name).Err(); err != nil {
		c.log.Warn("leave usage consumer group", "consumer", c.name, "err", err)
	}
}

func (c *Consumer) redisErr(what string, err error) error {
	if redis.HasErrorPrefix(err, "NOGROUP") {
		c.groupReady = false // the stream was deleted: recreate the group next pass
	}
	return fmt.Errorf("%s stream %s: %w", what, c.stream, err)
}

// settle stores the batch, dead-letters what can never be stored, then acknowledges and
// deletes every entry. Any error leaves all of them pending for a retry.
func (c *Consumer) settle(ctx context.Context, msgs []redis.XMessage) error {
	var (
		events  []Event
		sources []redis.XMessage // sources[i] carried events[i]
		dead    []deadEntry
		newest  time.Time
	)
	ids := make([]string, len(msgs))
	present := 0                  // entries still in the stream, for the acknowledgement to delete
	pending := map[string]int64{} // debits they add to pending sums, by limit.PendingKey and KeyPendingKey
	for i, m := range msgs {
		ids[i] = m.ID
		if len(m.Values) == 0 {
			continue // deleted after it was stored; only its acknowledgement was lost
		}
		present++
		addPending(pending, m)
		e, err := decodeEntry(m)
		if err != nil {
			dead = append(dead, deadEntry{m, err})
			continue
		}
		events, sources = append(events, e), append(sources, m)
		if e.Time.After(newest) {
			newest = e.Time
		}
	}
	inserted, rejected, err := c.store(ctx, events)
	if err != nil {
		return err
	}
	for i, reason := range rejected {
		dead = append(dead, deadEntry{sources[i], reason})
	}
	if err := c.deadLetter(ctx, dead); err != nil {
		return err
	}
	pipe := c.rdb.TxPipeline()
	// Late events (replays) moved no counter when they completed: now that the ledger
	// and the usage events hold them, their counters are deleted for the next admission
	// to reload, in the transaction that acknowledges them.
	limit.Drop(ctx, pipe, c.prefix, c.staleCounters(events, rejected)...)
	ack(ctx, pipe, c.stream, ids, present, pending)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("acknowledge %d entries of stream %s: %w", len(ids), c.stream, err)
	}

	c.ingested.Add(int64(inserted))
	c.batches.Add(1)
	c.deadLettered.Add(int64(len(dead)))
	var lag time.Duration
	if !newest.IsZero() {
		lag = max(time.Since(newest), 0)
		c.lagNanos.Store(int64(lag))
	}
	if c.metrics != nil {
		c.metrics.ingested.Add(float64(inserted))
		c.metrics.dead.Add(float64(len(dead)))
		if !newest.IsZero() {
			c.metrics.lag.Observe(lag.Seconds())
		}
	}
	c.log.Debug("usage batch stored", "entries", len(msgs), "inserted", inserted, "dead_lettered", len(dead), "lag", lag)
	return nil
}

//go:embed ack.lua
var ackLua string

// ack acknowledges and deletes the entries ids (present of them still in the stream)
// and takes their debits off the pending sums (limit.PendingKey, KeyPendingKey) — in one script,
// so that the sums move exactly when the entries leave the stream. It is sent as EVAL,
// once per batch, so that it can sit in the transaction without a NOSCRIPT to handle.
func ack(ctx context.Context, pipe redis.Pipeliner, stream string, ids []string, present int, pending map[string]int64) {
	keys := make([]string, 1, 1+len(pending))
	keys[0] = stream
	args := make([]any, 0, 3+len(ids)+len(pending))
	args = append(args, ConsumerGroup, len(ids))
	for _, id := range ids {
		args = append(args, id)
	}
	args = append(args, present)
	for key, amount := range pending {
		keys = append(keys, key)
		args = append(args, amount)
	}
	pipe.Eval(ctx, ackLua, keys, args...)
}

// addPending adds the debit an entry added to pending sums, if any, to pending: its
// user's (limit.PendingKeyField) and its key's (limit.KeyPendingKeyField, when named),
// the amount being limit.PendingField.
func addPending(pending map[string]int64, m redis.XMessage) {
	user, _ := m.Values[limit.PendingKeyField].(string)
	key, _ := m.Values[limit.KeyPendingKeyField].(string)
	raw, _ := m.Values[limit.PendingField].(string)
	amount, err := strconv.ParseInt(raw, 10, 64)
	if user == "" || err != nil || amount <= 0 {
		return
	}
	pending[user] += amount
	if key != "" {
		pending[key] += amount
	}
}

// staleCounters are the counter keys of the Late events stored (limit.CounterKeys).
func (c *Consumer) staleCounters(events []Event, rejected map[int]error) []string {
	var keys []string
	for i, e := range events {
		if e.Late && rejected[i] == nil {
			keys = append(keys, limit.CounterKeys(c.prefix, e.UserID, e.KeyID, e.Time)...)
		}
	}
	slices.Sort(keys) // a replayed batch often holds many events of one user
	return slices.Compact(keys)
}

// store ingests the events. If the batch breaks a constraint (an event naming a user that
// does not exist, say), it stores them one by one so that only the offending events are
// rejected: one bad entry must not stall billing for everyone behind it.
func (c *Consumer) store(ctx context.Context, events []Event) (inserted int, rejected map[int]error, err error) {
	res, err := Ingest(ctx, c.pool, events)
	if err == nil || !isDataError(err) {
		return res.Inserted, nil, err
	}
	rejected = map[int]error{}
	for i, e := range events {
		res, err := Ingest(ctx, c.pool, []Event{e})
		switch {
		case err == nil:
			inserted += res.Inserted
		case isDataError(err):
			rejected[i] = err
		default:
			return 0, nil, err
		}
	}
	return inserted, rejected, nil
}

// isDataError reports whether the data itself was refused — by PostgreSQL (classes 22 and
// 23) or because an event names a row that does not exist — as opposed to a failure a
// retry may cure.
func isDataError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.Is(err, errUnknownReference) ||
		errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23"))
}

type deadEntry struct {
	msg    redis.XMessage
	reason error
}

func (c *Consumer) deadLetter(ctx context.Context, dead []deadEntry) error {
	if len(dead) == 0 {
		return nil
	}
	pipe := c.rdb.Pipeline()
	for _, d := range dead {
		raw, ok := d.msg.Values[StreamField].(string)
		if !ok {
			b, _ := json.Marshal(d.msg.Values)
			raw = string(b)
		}
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: c.dead, Values: []any{
			"id", d.msg.ID, "err", d.reason.Error(), "consumer", c.name, StreamField, raw,
		}})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("dead-letter %d entries to %s: %w", len(dead), c.dead, err)
	}
	for _, d := range dead {
		c.log.Error("usage entry dead-lettered", "stream_id", d.msg.ID, "stream", c.dead, "err", d.reason)
	}
	return nil
}

func decodeEntry(m redis.XMessage) (Event, error) {
	raw, ok := m.Values[StreamField].(string)
	if !ok {
		return Event{}, fmt.Errorf("entry has no %q field", StreamField)
	}
	var e Event
	if err := DecodeEvent(raw, &e); err != nil {
		return Event{}, fmt.Errorf("decode usage event: %w", err)
	}
	return e, validateEvent(e)
}

// validateEvent rejects events that could never be stored or would bill wrongly.
func validateEvent(e Event) error {
	switch {
	case e.RequestID == "":
		return errors.New("usage event without request id")
	case e.Time.IsZero():
		return fmt.Errorf("usage event %s without time", e.RequestID)
	case e.UserID <= 0 || e.KeyID <= 0 || e.GroupID <= 0 || e.AccountID <= 0 || e.PriceID <= 0:
		return fmt.Errorf("usage event %s lacks a user, key, group, account or price id", e.RequestID)
	case e.FactorDen <= 0:
		return fmt.Errorf("usage event %s has factor denominator %d", e.RequestID, e.FactorDen)
	case e.BilledNano < 0 || e.OfficialNano < 0:
		return fmt.Errorf("usage event %s has a negative cost", e.RequestID)
	}
	return nil
}

type consumerMetrics struct {
	ingested, dead, failures prometheus.Counter
	lag                      prometheus.Histogram
}

func newConsumerMetrics(reg prometheus.Registerer) *consumerMetrics {
	m := &consumerMetrics{
		ingested: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_usage_ingested_total",
			Help: "Usage events newly stored in PostgreSQL.",
		}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_usage_dead_lettered_total",
			Help: "Usage stream entries moved to the dead-letter stream.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_usage_ingest_failures_total",
			Help: "Usage batches that failed to be stored or acknowledged and will be retried.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tollgate_usage_ingest_lag_seconds",
			Help:    "Time from the newest event of a batch to the batch being stored.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}),
	}
	reg.MustRegister(m.ingested, m.dead, m.failures, m.lag)
	return m
}
