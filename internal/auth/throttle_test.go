package auth

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testenv"
)

func TestThrottle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	now := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC) // 4 minutes into a 10-minute window
	th := NewThrottle(rdb, prefix, "login", 3, 10*time.Minute)
	th.now = func() time.Time { return now }

	attempt := func(ip, email string) Verdict {
		t.Helper()
		v, err := th.Attempt(ctx, ip, email)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	for i := range 3 {
		if v := attempt("10.0.0.1", "ada@example.com"); !v.Allowed {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	v := attempt("10.0.0.1", "ada@example.com")
	if v.Allowed || v.RetryAfter != 6*time.Minute {
		t.Fatalf("4th attempt: %+v, want refused with 6m to wait", v)
	}

	// The email's limit holds from another address (a distributed guess at one account),
	// in any letter case.
	if v := attempt("10.0.0.2", " ADA@example.com"); v.Allowed {
		t.Error("per-email limit bypassed from another IP")
	}
	// The IP's limit holds for other emails (one client guessing many accounts).
	if v := attempt("10.0.0.1", "bob@example.com"); v.Allowed {
		t.Error("per-IP limit bypassed with another email")
	}
	// Others are unaffected.
	if v := attempt("10.0.0.3", "eve@example.com"); !v.Allowed {
		t.Error("an unrelated client was throttled")
	}

	// Forgive clears the email's counter, not the IP's.
	if err := th.Forgive(ctx, "ada@example.com"); err != nil {
		t.Fatal(err)
	}
	if v := attempt("10.0.0.4", "ada@example.com"); !v.Allowed {
		t.Error("email still throttled after Forgive")
	}
	if v := attempt("10.0.0.1", "carol@example.com"); v.Allowed {
		t.Error("Forgive cleared the IP counter")
	}

	// A new window starts afresh, and old counters expire.
	now = now.Add(6 * time.Minute)
	if v := attempt("10.0.0.1", "ada@example.com"); !v.Allowed {
		t.Error("still throttled in the next window")
	}
	keys, err := rdb.Keys(ctx, prefix+"rl:login:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if ttl, err := rdb.TTL(ctx, k).Result(); err != nil || ttl <= 0 || ttl > 10*time.Minute {
			t.Errorf("key %s has TTL %v (%v)", k, ttl, err)
		}
	}
}
