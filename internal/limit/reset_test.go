package limit

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testenv"
)

// TestCounterKeysMatchTheGate: the names CounterKeys gives are the ones admission and
// completion use, on any day (the gate's names are cached per day, CounterKeys' are not);
// so is PendingKey's.
func TestCounterKeysMatchTheGate(t *testing.T) {
	g := NewGate(nil, "tg:", nil, nil, Options{})
	for _, at := range []time.Time{
		time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(2027, 1, 1, 0, 30, 0, 0, time.FixedZone("", 3600)), // still Dec 31 in UTC
	} {
		spend := g.spendKeys(7, 42, at)
		want := []string{g.balanceKey(7), spend[0], spend[1], spend[2]}
		if got := CounterKeys("tg:", 7, 42, at); !slices.Equal(got, want) {
			t.Fatalf("at %v: CounterKeys %q, the gate uses %q", at, got, want)
		}
	}
	if got, want := PendingKey("tg:", 7), g.users.get(7).pend; got != want {
		t.Fatalf("PendingKey %q, the gate uses %q", got, want)
	}
}

// TestResetCountersRetriesUntilRedisAnswers: the counters of usage stored without its
// completion are deleted (and nobody else's); while Redis is down they are kept and
// deleted by a later call.
func TestResetCountersRetriesUntilRedisAnswers(t *testing.T) {
	rs := testenv.RedisServer(t) // its own server: the test stops it
	rdb := rs.Client()
	ctx := context.Background()
	g := NewGate(rdb, "p:", nil, nil, Options{})
	at := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	stored := Stored{UserID: 1, KeyID: 10, Time: at}
	setAll := func() {
		t.Helper()
		for _, k := range append(CounterKeys("p:", 1, 10, at), CounterKeys("p:", 2, 20, at)...) {
			if err := rdb.Set(ctx, k, "5", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	left := func(user, key int64) int64 {
		t.Helper()
		n, err := rdb.Exists(ctx, CounterKeys("p:", user, key, at)...).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	setAll()
	if err := g.ResetCounters(ctx, stored); err != nil {
		t.Fatal(err)
	}
	if n := left(1, 10); n != 0 {
		t.Fatalf("%d of the stored event's counters left", n)
	}
	if n := left(2, 20); n != 4 {
		t.Fatalf("another user's counters were deleted: %d of 4 left", n)
	}
	if n := g.PendingResets(); n != 0 {
		t.Fatalf("%d resets pending after a success", n)
	}

	rs.Stop()
	if err := g.ResetCounters(ctx, stored); err == nil {
		t.Fatal("ResetCounters succeeded with Redis stopped")
	}
	if n := g.PendingResets(); n != 4 {
		t.Fatalf("%d resets pending with Redis stopped, want the event's 4", n)
	}
	// With resets pending, another stored event's are queued for the retry without
	// waiting for Redis again.
	if err := g.ResetCounters(ctx, Stored{UserID: 3, KeyID: 30, Time: at}); err != nil {
		t.Fatalf("a reset queued behind pending ones reported %v", err)
	}
	if n := g.PendingResets(); n != 8 {
		t.Fatalf("%d resets pending, want both events' 8", n)
	}
	rs.Start()
	setAll() // what Redis held when it went away (a server without persistence starts empty)
	for _, k := range CounterKeys("p:", 3, 30, at) {
		if err := rdb.Set(ctx, k, "5", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.ResetCounters(ctx); err != nil {
		t.Fatal(err)
	}
	if n := left(1, 10) + left(3, 30); n != 0 {
		t.Fatalf("the retry left %d counters", n)
	}
	if n := left(2, 20); n != 4 {
		t.Fatalf("the retry deleted another user's counters: %d of 4 left", n)
	}
	if n := g.PendingResets(); n != 0 {
		t.Fatalf("%d resets pending after the retry", n)
	}
	// A counter loaded again right after the retry (before the workers had ingested what
	// the stream held while Redis was away) is deleted once more, settleAfter later.
	setAll()
	for deadline := time.Now().Add(settleAfter + 2*time.Second); left(1, 10)+left(3, 30) != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d counters left %s after the retry", left(1, 10)+left(3, 30), settleAfter+2*time.Second)
		}
	}
	if n := left(2, 20); n != 4 {
		t.Fatalf("the second delete took another user's counters: %d of 4 left", n)
	}
}

// TestBalanceLoadSeesADropUnderWay: a balance snapshot dropped for a change of balance
// (RefreshBalance; a top-up in the web app) while a proxy is loading it from the ledger —
// the load read the ledger before the change committed — is not set from that read: the
// load reads again, and the snapshot holds the changed balance. Without the generation,
// the drop came before the set and was lost: the snapshot kept the old balance until it
// expired.
func TestBalanceLoadSeesADropUnderWay(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	ledger := int64(0) // a used-up wallet
	var g *Gate
	loads := 0
	g = NewGate(rdb, prefix, func(ctx context.Context, user int64) (int64, error) {
		loads++
		read := ledger
		if loads == 1 {
			// The top-up commits and drops the snapshot just after this load read the
			// ledger, before it sets the snapshot.
			ledger = 5_000_000_000
			if err := g.RefreshBalance(ctx, user); err != nil {
				t.Fatal(err)
			}
		}
		return read, nil
	}, nil, Options{})
	one := []Candidate{{ID: 1, Priority: 1, Weight: 1}}
	if _, err := g.Admit(ctx, Request{RequestID: "r1", UserID: 9, KeyID: 7, Candidates: one}); err != nil {
		t.Fatalf("admission after the top-up: %v", err)
	}
	if got, err := rdb.Get(ctx, g.BalanceKey(9)).Int64(); err != nil || got != ledger {
		t.Fatalf("snapshot %d (%v) after %d loads, ledger %d", got, err, loads, ledger)
	}
	if loads != 2 {
		t.Fatalf("%d loads, want 2: the first one's read is stale", loads)
	}
}

// TestSpendLoadSeesAResetUnderWay: the same for a spend counter — usage stored without
// its completion (ResetCounters) while the key's daily spend is being loaded, from a read
// of the usage events that lacks it, makes the load read again: the counter holds the
// spend with that usage, and the key's daily cap refuses.
func TestSpendLoadSeesAResetUnderWay(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	spent := int64(0)
	var g *Gate
	loads := 0
	g = NewGate(rdb, prefix, func(context.Context, int64) (int64, error) { return 1_000_000_000, nil },
		func(ctx context.Context, user, key int64, since time.Time) (int64, error) {
			loads++
			read := spent
			if loads == 1 {
				// A request's usage, stored straight in PostgreSQL, reaches the cap.
				spent = 100
				if err := g.ResetCounters(ctx, Stored{UserID: user, KeyID: 7, Time: time.Now()}); err != nil {
					t.Fatal(err)
				}
			}
			return read, nil
		}, Options{})
	one := []Candidate{{ID: 1, Priority: 1, Weight: 1}}
	_, err := g.Admit(ctx, Request{RequestID: "r1", UserID: 9, KeyID: 7, KeyDailyCap: 100, Candidates: one})
	var refusal *Refusal
	if !errors.As(err, &refusal) || refusal.Type != "tollgate_spend_cap" {
		t.Fatalf("admission with the cap reached during the load: %v", err)
	}
	if loads != 2 {
		t.Fatalf("%d loads, want 2: the first one's read is stale", loads)
	}
}

// TestSpendLoadCountsPendingUsage: a spend counter loaded while usage waits in the stream
// (no worker has stored it in the usage events) counts that usage through the key's or the
// user's pending sum: after a reset, a key's daily cap, its monthly cap and the user's
// daily cap refuse what they refused before it. A stream holding usage from before the
// counter's period is not counted (the sums do not tell the days apart): the counter
// goes without, never charging a backlog of yesterday's to today.
func TestSpendLoadCountsPendingUsage(t *testing.T) {
	ctx := context.Background()
	one := []Candidate{{ID: 1, Priority: 1, Weight: 1}}
	for _, tc := range []struct {
		name     string
		req      Request
		backlog  bool // an entry from yesterday sits in the stream
		admitted bool // after the reset
	}{
		{"key daily", Request{KeyDailyCap: 100}, false, false},
		{"key monthly", Request{KeyMonthlyCap: 100}, false, false},
		{"user daily", Request{UserDailyCap: 100}, false, false},
		{"key daily, yesterday's backlog", Request{KeyDailyCap: 100}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb, prefix := testenv.Redis(t)
			g := NewGate(rdb, prefix, func(context.Context, int64) (int64, error) { return 1_000_000_000, nil },
				func(context.Context, int64, int64, time.Time) (int64, error) { return 0, nil }, // nothing stored
				Options{ReserveIdle: -1})
			if tc.backlog {
				yesterday := time.Now().Add(-24 * time.Hour).UnixMilli()
				if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: UsageStream(prefix), ID: strconv.FormatInt(yesterday, 10) + "-0",
					Values: []any{"e", "{}"}}).Err(); err != nil {
					t.Fatal(err)
				}
			}
			req := tc.req
			req.UserID, req.KeyID, req.Candidates = 9, 7, one
			admit := func(id string) (Lease, error) {
				r := req
				r.RequestID = id
				return g.Admit(ctx, r)
			}
			for _, id := range []string{"r1", "r2"} {
				l, err := admit(id)
				if err != nil {
					t.Fatalf("%s: %v", id, err)
				}
				if err := g.Complete(ctx, l, UsageStream(prefix), []byte(`{}`), 60); err != nil {
					t.Fatal(err)
				}
			}
			var refusal *Refusal
			if _, err := admit("r3"); !errors.As(err, &refusal) || refusal.Type != "tollgate_spend_cap" {
				t.Fatalf("r3 with 120 of 100 spent: %v", err)
			}
			// Usage stored without its completion (a fallback): the counters go, and the
			// next admission loads them from the usage events, which hold none of the 120.
			if err := g.ResetCounters(ctx, Stored{UserID: 9, KeyID: 7, Time: time.Now()}); err != nil {
				t.Fatal(err)
			}
			_, err := admit("r4")
			if tc.admitted != (err == nil) {
				t.Fatalf("r4 after the reset: %v, want admitted %v", err, tc.admitted)
			}
			if !tc.admitted && (!errors.As(err, &refusal) || refusal.Type != "tollgate_spend_cap") {
				t.Fatalf("r4 after the reset: %v", err)
			}
		})
	}
}
