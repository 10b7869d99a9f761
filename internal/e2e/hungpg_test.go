package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testenv"
)

// TestHungPostgres: when PostgreSQL hangs (its processes frozen: connections open, nothing
// answers, as in a failover or with a network dropping packets), known keys are served
// as usual; a key the proxy has not cached gets a 503 in the protocol's shape after the
// lookup's deadline instead of a request that never ends; the web app answers its
// "Temporarily unavailable" page after its request deadline. Once PostgreSQL answers,
// both serve again by themselves and the usage of the outage is billed.
func TestHungPostgres(t *testing.T) {
	pg := testenv.Postgres(t)
	s := newStack(t, func(su *setup) { su.pg = pg })
	web := s.startWeb(t)
	fresh := s.userWithEmptyWallet(t)
	s.exec(t, "INSERT INTO wallet_tx (user_id, amount_nano, kind, ref) SELECT id, 1000000000, 'adjust', 'test:fund' FROM users WHERE email = 'broke@example.com'")
	s.exec(t, "UPDATE users SET balance_nano = 1000000000 WHERE email = 'broke@example.com'")
	if status, _ := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
		t.Fatalf("before PostgreSQL hung: %d", status)
	}
	pg.Freeze()
	timed := func(f func() (int, string)) (int, string, time.Duration) {
		start := time.Now()
		status, body := f()
		return status, body, time.Since(start)
	}
	post := func(key string) func() (int, string) {
		return func() (int, string) {
			resp, b := rawPost(t, s.proxyURL, key, smallBody, nil) // httpClient: 30 s at most
			return resp.StatusCode, string(b)
		}
	}
	for range 3 {
		if status, body, took := timed(post(s.seeded.DemoKey)); status != 200 {
			t.Fatalf("known key with PostgreSQL hung: %d after %s %s", status, took, body)
		}
	}
	status, body, took := timed(post(fresh))
	if status != 503 || !strings.Contains(body, "tollgate_unavailable") {
		t.Fatalf("uncached key with PostgreSQL hung: %d after %s %s", status, took, body)
	}
	t.Logf("uncached key: 503 after %s", took.Round(time.Millisecond))
	status, page, took := timed(func() (int, string) { return web.signIn(t) })
	if status != http.StatusServiceUnavailable || !strings.Contains(page, "Temporarily unavailable") {
		t.Fatalf("sign-in with PostgreSQL hung: %d after %s\n%s", status, took, page)
	}
	t.Logf("sign-in: 503 page after %s", took.Round(time.Millisecond))
	if status, body, _ := timed(post(s.seeded.DemoKey)); status != 200 {
		t.Fatalf("known key after the slow requests: %d %s", status, body)
	}

	pg.Thaw()
	if status, body, _ := timed(post(fresh)); status != 200 {
		t.Fatalf("the uncached key once PostgreSQL answers: %d %s", status, body)
	}
	if status, page := web.signIn(t); status != http.StatusSeeOther {
		t.Fatalf("sign-in once PostgreSQL answers: %d\n%s", status, page)
	}
	s.ingest(6)
}
