package web_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

func TestHealth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.client(t)
	if res := b.get(t, c, "/healthz", nil); res.status != http.StatusOK {
		t.Errorf("healthz: status %d", res.status)
	}
	res := b.get(t, c, "/readyz", nil)
	if res.status != http.StatusOK {
		t.Errorf("readyz: status %d\n%s", res.status, res.body)
	}
	mustContain(t, res.body, "database: ok", "redis: ok")
}

// deadAddr is a local port nothing listens on.
const deadAddr = "127.0.0.1:1"

func TestReadyzRedisDown(t *testing.T) {
	t.Parallel()
	dead := redis.NewClient(&redis.Options{Addr: deadAddr, MaxRetries: -1})
	t.Cleanup(func() { dead.Close() })
	b := setupWith(t, setupOpts{redis: dead})
	c := b.client(t)
	if res := b.get(t, c, "/healthz", nil); res.status != http.StatusOK {
		t.Errorf("healthz: status %d", res.status)
	}
	res := b.get(t, c, "/readyz", nil)
	if res.status != http.StatusServiceUnavailable {
		t.Fatalf("readyz: status %d", res.status)
	}
	mustContain(t, res.body, "database: ok", "redis: unavailable")
}

func TestDatabaseDown(t *testing.T) {
	t.Parallel()
	// pgxpool connects lazily, so the app starts and every query fails to connect.
	dead, err := pgxpool.New(context.Background(), "postgres://tollgate@"+deadAddr+"/tollgate?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dead.Close)
	b := setupWith(t, setupOpts{db: dead})
	c := b.client(t)

	res := b.get(t, c, "/readyz", nil)
	if res.status != http.StatusServiceUnavailable {
		t.Errorf("readyz: status %d", res.status)
	}
	mustContain(t, res.body, "database: unavailable", "redis: ok")

	res = b.postForm(t, c, "/login", url.Values{"email": {"ada@example.com"}, "password": {"correct horse battery"}}, nil)
	if res.status != http.StatusServiceUnavailable {
		t.Fatalf("login with the database down: status %d", res.status)
	}
	mustContain(t, res.body, "Temporarily unavailable", "Request ID:")
	mustNotContain(t, res.body, "goroutine", "dial tcp", deadAddr)
	if res.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
}
