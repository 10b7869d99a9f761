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
	// Refused until the 4 attempts of this window, fading through the next one, leave
	// room: 1 + 4·(1 − f) ≤ 3 halfway into it, 6 + 5 minutes from now.
	v := attempt("10.0.0.1", "ada@example.com")
	if v.Allowed || v.RetryAfter != 11*time.Minute {
		t.Fatalf("4th attempt: %+v, want refused with 11m to wait", v)
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

	// A window boundary is no fresh start: the previous window's attempts still weigh.
	now = now.Add(6 * time.Minute)
	if v := attempt("10.0.0.1", "ada@example.com"); v.Allowed {
		t.Error("the IP's limit reset at the window boundary")
	}
	// A whole window later they are gone (the one refused attempt of the last window
	// weighs 1).
	now = now.Add(10 * time.Minute)
	if v := attempt("10.0.0.1", "ada@example.com"); !v.Allowed {
		t.Error("still throttled a window after the attempts")
	}
	keys, err := rdb.Keys(ctx, prefix+"rl:login:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if ttl, err := rdb.TTL(ctx, k).Result(); err != nil || ttl <= 0 || ttl > 20*time.Minute {
			t.Errorf("key %s has TTL %v (%v)", k, ttl, err)
		}
	}
}

// TestThrottleAcrossABoundary: Limit tries just before a window boundary leave none just
// after it (fixed windows alone allowed Limit more), and the wait is until the earlier
// tries have faded enough.
func TestThrottleAcrossABoundary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	now := time.Date(2026, 1, 2, 3, 9, 59, 0, time.UTC) // 1 s before a 10-minute window ends
	th := NewThrottle(rdb, prefix, "login", 10, 10*time.Minute)
	th.now = func() time.Time { return now }
	for i := range 10 {
		if v, err := th.Attempt(ctx, "10.0.0.1", "ada@example.com"); err != nil || !v.Allowed {
			t.Fatalf("attempt %d: %+v %v", i+1, v, err)
		}
	}
	now = now.Add(2 * time.Second)
	v, err := th.Attempt(ctx, "10.0.0.1", "ada@example.com")
	if err != nil || v.Allowed {
		t.Fatalf("11th attempt, just after the boundary: %+v %v", v, err)
	}
	// Allowed once 1 (this window) + 1 (the next try) + 10·(1 − f) ≤ 10: f ≥ 0.2, two
	// minutes into the window, 1 m 59 s from now.
	if v.RetryAfter != 119*time.Second {
		t.Fatalf("wait %s, want 1m59s", v.RetryAfter)
	}
	now = now.Add(v.RetryAfter)
	if v, err := th.Attempt(ctx, "10.0.0.1", "ada@example.com"); err != nil || !v.Allowed {
		t.Fatalf("after the wait it said: %+v %v", v, err)
	}
}
