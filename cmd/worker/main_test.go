package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/db"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/internal/usage"
)

func TestHealthRoutes(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	usage.NewConsumer(nil, nil, "p:", "c", slog.Default(), usage.WithMetrics(reg))
	stats := func() usage.ConsumerStats { return usage.ConsumerStats{Ingested: 3, Lag: 1500 * time.Millisecond} }
	ok := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("connection refused") }
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	tests := []struct {
		name   string
		checks []check
		path   string
		status int
		body   string
	}{
		{"alive", []check{{"database", down}}, "/healthz", 200, `"ingested":3`},
		{"lag", nil, "/healthz", 200, `"lag_seconds":1.5`},
		{"ready", []check{{"database", ok}, {"redis", ok}}, "/readyz", 200, "ok"},
		{"redis down", []check{{"database", ok}, {"redis", down}}, "/readyz", 503, "unavailable: redis"},
		{"metrics", nil, "/metrics", 200, "tollgate_usage_ingest_lag_seconds_bucket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			routes(quiet, tt.checks, stats, reg).ServeHTTP(rec, httptest.NewRequest("GET", tt.path, nil))
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.body) {
				t.Fatalf("GET %s = %d %q; want %d containing %q", tt.path, rec.Code, rec.Body.String(), tt.status, tt.body)
			}
		})
	}
}

func TestRunFailsOnBadConfig(t *testing.T) {
	t.Setenv("DATABASE_URL", "mysql://nope")
	t.Setenv("REDIS_URL", "redis://127.0.0.1:1/0")
	t.Setenv("SECRET_KEY", strings.Repeat("ab", 32))
	err := run(context.Background(), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("run = %v, want an error naming DATABASE_URL", err)
	}
}

func TestRunRefusesARefreshLeadShorterThanItsInterval(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://127.0.0.1:1/x")
	t.Setenv("REDIS_URL", "redis://127.0.0.1:1/0")
	t.Setenv("SECRET_KEY", strings.Repeat("ab", 32))
	t.Setenv("OAUTH_REFRESH_AHEAD", "1m")
	t.Setenv("OAUTH_REFRESH_INTERVAL", "5m")
	err := run(context.Background(), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "OAUTH_REFRESH_AHEAD") {
		t.Fatalf("run = %v, want an error naming OAUTH_REFRESH_AHEAD", err)
	}
}

// TestRun starts the whole worker, has it bill an event the proxy appended, checks its
// health endpoints, and stops it as SIGTERM would.
func TestRun(t *testing.T) {
	dbURL := testenv.NewDatabase(t)
	rdb, prefix := testenv.Redis(t)
	addr := freeAddr(t)
	t.Setenv("ENV", "test")
	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("REDIS_URL", testenv.RedisURL(t))
	t.Setenv("REDIS_PREFIX", prefix)
	t.Setenv("SECRET_KEY", strings.Repeat("ab", 32))
	t.Setenv("WORKER_HEALTH_ADDR", addr)
	t.Setenv("LOG_LEVEL", "warn")
	fx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"base":"USD","rates":{"CNY":7.2}}`))
	}))
	defer fx.Close()
	t.Setenv("FX_SOURCE_URL", fx.URL)

	pool, err := db.Open(context.Background(), dbURL, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	event := fixtureEvent(t, pool)
	raw, _ := json.Marshal(event)
	if err := rdb.XAdd(context.Background(), &redis.XAddArgs{
		Stream: usage.StreamKey(prefix), Values: []any{usage.StreamField, string(raw)},
	}).Err(); err != nil {
		t.Fatal(err)
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- run(ctx, os.Stderr) }()

	base := "http://" + addr
	waitFor(t, "the event to be billed", func() bool {
		var balance int64
		err := pool.QueryRow(context.Background(), "SELECT balance_nano FROM users WHERE id = $1", event.UserID).Scan(&balance)
		return err == nil && balance == -event.BilledNano
	})
	waitFor(t, "the rollup to run on start", func() bool {
		var n int
		err := pool.QueryRow(context.Background(), "SELECT count(*) FROM usage_hourly").Scan(&n)
		return err == nil && n == 1
	})
	waitFor(t, "the exchange rate to be synced on start", func() bool {
		var rate int64
		err := pool.QueryRow(context.Background(), "SELECT rate_micro FROM fx_rates").Scan(&rate)
		return err == nil && rate == 7_200_000
	})
	for path, want := range map[string]string{"/readyz": "ok", "/healthz": `"ingested":1`, "/metrics": "tollgate_usage_ingested_total 1"} {
		body, status := get(t, base+path)
		if status != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s = %d %q, want 200 containing %q", path, status, body, want)
		}
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after shutdown", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after shutdown")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("health server still answers after shutdown")
	}
}

// fixtureEvent creates the rows an event references and returns a valid event.
func fixtureEvent(t *testing.T, pool *pgxpool.Pool) usage.Event {
	t.Helper()
	ctx, q := context.Background(), sqlc.New()
	g, err := q.GroupInsert(ctx, pool, sqlc.GroupInsertParams{Name: "default", IsDefault: true})
	if err != nil {
		t.Fatal(err)
	}
	u, err := q.UserInsert(ctx, pool, sqlc.UserInsertParams{Email: "u@example.com", PasswordHash: "x", Role: "user", GroupID: g.ID})
	if err != nil {
		t.Fatal(err)
	}
	k, err := q.APIKeyInsert(ctx, pool, sqlc.APIKeyInsertParams{UserID: u.ID, Name: "k", DisplayPrefix: "tg-test", Hash: []byte("h")})
	if err != nil {
		t.Fatal(err)
	}
	a, err := q.AccountInsert(ctx, pool, sqlc.AccountInsertParams{
		Name: "a", Provider: "anthropic", Kind: "api_key", BaseURL: "http://127.0.0.1:1",
		SecretEnc: []byte("sealed"), Weight: 1, Models: []string{}, ModelMap: []byte("{}"),
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := q.PriceInsert(ctx, pool, sqlc.PriceInsertParams{
		Provider: "anthropic", Pattern: "claude-test", Match: "exact", EffectiveFrom: time.Now().Add(-time.Hour),
		InputPico: 3000, OutputPico: 15000,
	})
	if err != nil {
		t.Fatal(err)
	}
	return usage.Event{
		RequestID: "req-run", Time: time.Now().UTC(), UserID: u.ID, KeyID: k.ID, GroupID: g.ID,
		AccountID: a.ID, Provider: "anthropic", Endpoint: "/v1/messages",
		ModelRequested: "claude-test", ModelUpstream: "claude-test",
		Usage: billing.Usage{Input: 1000, Output: 100}, OfficialNano: 4_500, BilledNano: 4_500,
		FactorNum: 1, FactorDen: 1, PriceID: p.ID, Status: 200, Attempt: 1,
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (string, int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}
