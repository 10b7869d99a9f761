// Package e2e drives whole Tollgate deployments in-process through real PostgreSQL,
// Redis and HTTP, with internal/fakellm as the upstream: the proxy as cmd/proxy runs it,
// the usage consumer as cmd/worker runs it, and the seed as `web seed` runs it.
package e2e

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/account"
	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/internal/db"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/fakellm"
	"github.com/tollgate/tollgate/internal/limit"
	"github.com/tollgate/tollgate/internal/proxyapp"
	"github.com/tollgate/tollgate/internal/secret"
	"github.com/tollgate/tollgate/internal/seed"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/internal/usage"
)

// stack is one deployment: fakellm, a proxy, an ingesting consumer and their stores.
type stack struct {
	t        *testing.T
	fake     *fakellm.Server
	fakeURL  string
	proxyURL string
	pool     *pgxpool.Pool
	rdb      *redis.Client
	prefix   string
	consumer *usage.Consumer
	seeded   seed.Result
	dbURL    string
	redisURL string
	spoolDir string
}

var secretKey = hex.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

func quietLog() *slog.Logger {
	if os.Getenv("TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// setup tunes a stack before its proxy starts.
type setup struct {
	accounts   []accountSpec // extra accounts in the default pool (besides the demo one)
	noDemo     bool          // take the seeded demo account out of the pool
	limits     limit.Options
	upstream   func(http.Handler) http.Handler // wraps fakellm (to observe or break it)
	quotaFlush time.Duration                   // default 200 ms
	pg, redis  *testenv.Server                 // servers of the test's own (fault tests)
	// UPSTREAM_HEADER_TIMEOUT, UPSTREAM_IDLE_TIMEOUT and UPSTREAM_RESPONSE_TIMEOUT of the
	// in-process proxy (0: off)
	headerTimeout, idleTimeout, responseTimeout time.Duration
}

type accountSpec struct {
	name, baseURL, apiKey string // baseURL "" means fakellm
	priority, weight      int32
	maxConcurrency        int32
	oauth                 *account.Credential // an OAuth account instead of an API key
	provider              string              // default anthropic
}

func newStack(t *testing.T, opts ...func(*setup)) *stack {
	t.Helper()
	var su setup
	for _, o := range opts {
		o(&su)
	}
	ctx := context.Background()
	var dbURL, redisURL string
	if su.pg != nil {
		dbURL = migratedDatabase(t, su.pg.URL)
	} else {
		dbURL = testenv.NewDatabase(t)
	}
	var rdb *redis.Client
	var prefix string
	if su.redis != nil {
		redisURL, prefix = su.redis.URL, "t:"
		opts, _ := redis.ParseURL(redisURL)
		rdb = redis.NewClient(opts)
		t.Cleanup(func() { rdb.Close() })
	} else {
		rdb, prefix = testenv.Redis(t)
		redisURL = testenv.RedisURL(t)
	}
	pool, err := db.Open(ctx, dbURL, 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	fake := fakellm.New(fakellm.Options{})
	var upstream http.Handler = fake
	if su.upstream != nil {
		upstream = su.upstream(fake)
	}
	fakeSrv := httptest.NewServer(upstream)
	t.Cleanup(fakeSrv.Close)

	res, err := seed.Run(ctx, pool, seed.Options{
		AdminEmail: "admin@example.com", AdminPassword: "admin-password-123",
		DemoEnvPath: t.TempDir() + "/demo.env", FakeLLMURL: fakeSrv.URL,
		WebURL: "http://web.invalid", ProxyURL: "http://proxy.invalid",
		Secret: []byte("0123456789abcdef0123456789abcdef"), Log: quietLog(),
	})
	if err != nil {
		t.Fatal(err)
	}

	addAccounts(t, pool, su, fakeSrv.URL, res)

	spoolDir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Proxy{Common: config.Common{
		Env: "test", LogLevel: "info", LogFormat: "text", DatabaseURL: dbURL,
		RedisURL: redisURL, RedisPrefix: prefix, SecretKey: secretKey,
	}, SpoolDir: spoolDir, SpoolEvery: 200 * time.Millisecond, ReadHeaderTimeout: time.Second, ReadTimeout: 2 * time.Second, Limits: su.limits, UpstreamHeaderTimeout: su.headerTimeout, UpstreamIdleTimeout: su.idleTimeout, UpstreamResponseTimeout: su.responseTimeout, QuotaFlushEvery: cmp.Or(su.quotaFlush, 200*time.Millisecond), OAuth: config.OAuth{AnthropicTokenURL: fakeSrv.URL + "/v1/oauth/token", AnthropicClientID: "tollgate-test-client"}}
	proxyCtx, stopProxy := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- proxyapp.Serve(proxyCtx, cfg, quietLog(), ln) }()
	t.Cleanup(func() {
		stopProxy()
		if err := <-done; err != nil {
			t.Errorf("proxy: %v", err)
		}
	})
	s := &stack{t: t, fake: fake, fakeURL: fakeSrv.URL, proxyURL: "http://" + ln.Addr().String(),
		pool: pool, rdb: rdb, prefix: prefix, seeded: res, dbURL: dbURL, redisURL: redisURL, spoolDir: spoolDir,
		consumer: usage.NewConsumer(rdb, pool, prefix, "test", quietLog(), usage.WithBlock(50*time.Millisecond))}
	s.waitReady()
	return s
}

// migratedDatabase creates and migrates a database on a server of the test's own.
func migratedDatabase(t *testing.T, serverURL string) string {
	t.Helper()
	ctx := context.Background()
	admin, err := db.Open(ctx, serverURL, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec(ctx, "CREATE DATABASE tollgate"); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(serverURL)
	u.Path = "/tollgate"
	pool, err := db.Open(ctx, u.String(), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := db.Migrate(ctx, pool, quietLog()); err != nil {
		t.Fatal(err)
	}
	return u.String()
}

func addAccounts(t *testing.T, pool *pgxpool.Pool, su setup, fakeURL string, res seed.Result) {
	t.Helper()
	ctx := context.Background()
	q := sqlc.New()
	box, err := secret.NewBox([]byte("0123456789abcdef0123456789abcdef"), secret.PurposeAccount)
	if err != nil {
		t.Fatal(err)
	}
	p, err := q.PoolGetByName(ctx, pool, "default")
	if err != nil {
		t.Fatal(err)
	}
	if su.noDemo {
		if _, err := pool.Exec(ctx, "DELETE FROM pool_accounts WHERE account_id = $1", res.AccountID); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range su.accounts {
		cred, kind := account.Credential{APIKey: a.apiKey}, "api_key"
		if a.oauth != nil {
			cred, kind = *a.oauth, "oauth"
		}
		sealed, err := account.Seal(box, cred)
		if err != nil {
			t.Fatal(err)
		}
		base := a.baseURL
		if base == "" || strings.HasPrefix(base, "/") {
			base = fakeURL + base // a path: on fakellm
		}
		provider := a.provider
		if provider == "" {
			provider = "anthropic"
		}
		var expires *time.Time
		if !cred.ExpiresAt.IsZero() {
			expires = &cred.ExpiresAt
		}
		row, err := q.AccountInsert(ctx, pool, sqlc.AccountInsertParams{
			Name: a.name, Provider: provider, Kind: kind, BaseURL: base, SecretEnc: sealed,
			Priority: a.priority, Weight: max(a.weight, 1), MaxConcurrency: a.maxConcurrency,
			Models: []string{}, ModelMap: []byte("{}"), TokenExpiresAt: expires,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := q.PoolAccountAttach(ctx, pool, sqlc.PoolAccountAttachParams{PoolID: p.ID, AccountID: row.ID}); err != nil {
			t.Fatal(err)
		}
	}
}

// accountID returns the id of the account with this name.
func (s *stack) accountID(name string) int64 {
	s.t.Helper()
	a, err := sqlc.New().AccountGetByName(context.Background(), s.pool, name)
	if err != nil {
		s.t.Fatal(err)
	}
	return a.ID
}

func (s *stack) waitReady() {
	s.t.Helper()
	waitUp(s.t, s.proxyURL+"/readyz", "in-process proxy")
}

// ingest runs the consumer until n events (in total) are in usage_events.
func (s *stack) ingest(n int) {
	s.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(15 * time.Second)
	for {
		// Errors (a database coming back) are retried until the deadline, as the worker does.
		_, ingestErr := s.consumer.ProcessOnce(ctx)
		var got int
		if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM usage_events").Scan(&got); err != nil {
			ingestErr = errors.Join(ingestErr, err)
		}
		if got >= n {
			if got > n {
				s.t.Fatalf("usage_events has %d rows, want %d", got, n)
			}
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("usage_events has %d rows after 15 s, want %d (last error: %v)", got, n, ingestErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *stack) balance(userID int64) int64 {
	s.t.Helper()
	var cached, ledger int64
	err := s.pool.QueryRow(context.Background(),
		"SELECT u.balance_nano, coalesce((SELECT sum(amount_nano) FROM wallet_tx WHERE user_id = u.id), 0) FROM users u WHERE id = $1",
		userID).Scan(&cached, &ledger)
	if err != nil {
		s.t.Fatal(err)
	}
	if cached != ledger {
		s.t.Fatalf("user %d: cached balance %d != ledger sum %d", userID, cached, ledger)
	}
	return ledger
}
