package job_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/internal/usage"
)

// testBundle is a fresh database with one user, key, account and price that events can
// reference.
type testBundle struct {
	pool                             *pgxpool.Pool
	user, key, group, account, price int64
	log                              *slog.Logger
	logs                             *syncBuffer
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx := context.Background()
	logs := &syncBuffer{}
	b := &testBundle{pool: testenv.DB(t), logs: logs, log: slog.New(slog.NewTextHandler(logs, nil))}
	q := sqlc.New()
	g, err := q.GroupInsert(ctx, b.pool, sqlc.GroupInsertParams{Name: "default", IsDefault: true})
	must(t, err)
	u, err := q.UserInsert(ctx, b.pool, sqlc.UserInsertParams{Email: "u@example.com", PasswordHash: "x", Role: "user", GroupID: g.ID})
	must(t, err)
	k, err := q.APIKeyInsert(ctx, b.pool, sqlc.APIKeyInsertParams{UserID: u.ID, Name: "k", DisplayPrefix: "tg-test", Hash: []byte("h")})
	must(t, err)
	a, err := q.AccountInsert(ctx, b.pool, sqlc.AccountInsertParams{
		Name: "a", Provider: "anthropic", Kind: "api_key", BaseURL: "http://127.0.0.1:1",
		SecretEnc: []byte("sealed"), Weight: 1, Models: []string{}, ModelMap: []byte("{}"),
	})
	must(t, err)
	p, err := q.PriceInsert(ctx, b.pool, sqlc.PriceInsertParams{
		Provider: "anthropic", Pattern: "claude-test", Match: "exact", EffectiveFrom: time.Now().Add(-time.Hour),
		InputPico: 3000, OutputPico: 15000,
	})
	must(t, err)
	b.user, b.key, b.group, b.account, b.price = u.ID, k.ID, g.ID, a.ID, p.ID
	return b
}

// ingest stores one event per time, each billed billed nano-USD.
func (b *testBundle) ingest(t *testing.T, billed int64, times ...time.Time) {
	t.Helper()
	_, err := usage.Ingest(context.Background(), b.pool, b.events(billed, times...))
	must(t, err)
}

// events returns one event per time, each billed billed nano-USD, with request ids
// derived from the times (the same times make a replay).
func (b *testBundle) events(billed int64, times ...time.Time) []usage.Event {
	var events []usage.Event
	for _, at := range times {
		events = append(events, usage.Event{
			RequestID: fmt.Sprintf("req-%d", at.UnixNano()), Time: at, UserID: b.user, KeyID: b.key,
			GroupID: b.group, AccountID: b.account, Provider: "anthropic", Endpoint: "/v1/messages",
			ModelRequested: "claude-test", ModelUpstream: "claude-test",
			Usage:        billing.Usage{Input: 100, Output: 10, CacheRead: 5},
			OfficialNano: billed, BilledNano: billed, FactorNum: 1, FactorDen: 1, PriceID: b.price, Status: 200,
		})
	}
	return events
}

// rollup returns the usage_hourly rows as "hour requests billed" lines, in hour order.
func (b *testBundle) rollup(t *testing.T) []string {
	t.Helper()
	rows, err := b.pool.Query(context.Background(),
		"SELECT hour, requests, billed_cost_nano, input_tokens, cache_read_tokens FROM usage_hourly ORDER BY hour")
	must(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var hour time.Time
		var req, billed, in, cr int64
		must(t, rows.Scan(&hour, &req, &billed, &in, &cr))
		out = append(out, fmt.Sprintf("%s n=%d billed=%d in=%d cache_read=%d", hour.UTC().Format(time.RFC3339), req, billed, in, cr))
	}
	must(t, rows.Err())
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// syncBuffer collects log output written from River's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

var _ io.Writer = (*syncBuffer)(nil)
