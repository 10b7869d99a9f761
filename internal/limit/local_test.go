package limit

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testenv"
)

// TestServingWithoutRedis: with REDIS_OUTAGE=serve a gate whose Redis is stopped admits
// from the ledger's balance and spend and its own counts, enforcing each limit in this
// process; without the option it refuses. Once Redis answers, admissions go through it
// again, after the counters of what was stored meanwhile are reset.
func TestServingWithoutRedis(t *testing.T) {
	rs := testenv.DurableRedisServer(t)
	rdb := rs.Client()
	ctx := context.Background()
	var balance, spent atomic.Int64
	balance.Store(1_000_000_000)
	var loaderErr atomic.Pointer[error]
	loadBalance := func(context.Context, int64) (int64, error) {
		if e := loaderErr.Load(); e != nil {
			return 0, *e
		}
		return balance.Load(), nil
	}
	loadSpend := func(context.Context, int64, int64, time.Time) (int64, error) { return spent.Load(), nil }
	g := NewGate(rdb, "p:", loadBalance, loadSpend, Options{RedisOutage: OutageServe, ReserveIdle: -1})
	refusing := NewGate(rdb, "p:", loadBalance, loadSpend, Options{ReserveIdle: -1})
	stream := "p:usage"
	cands := []Candidate{{ID: 1, Priority: 2, Weight: 1}, {ID: 2, Priority: 1, Weight: 1, MaxConcurrency: 1}}
	req := func(id string) Request {
		return Request{RequestID: id, UserID: 9, KeyID: 7, UserConcurrency: 3, Candidates: cands}
	}
	refusal := func(err error, status int, typ, text string) {
		t.Helper()
		var r *Refusal
		if !errors.As(err, &r) || r.Status != status || r.Type != typ || !strings.Contains(r.Message, text) {
			t.Fatalf("got %v, want a %d %s refusal saying %q", err, status, typ, text)
		}
	}

	l, err := g.Admit(ctx, req("up"))
	if err != nil || l.Local() {
		t.Fatalf("with Redis up: lease %+v, %v; want one from Redis", l, err)
	}
	if err := g.Complete(ctx, l, stream, nil, 0); err != nil {
		t.Fatal(err)
	}

	// A snapshot saying the wallet is used up, which Redis keeps across the outage: Redis
	// must not admit on it once back, as the usage stored meanwhile changed the ledger.
	at := time.Now()
	if err := rdb.Set(ctx, CounterKeys("p:", 9, 7, at)[0], "0", 0).Err(); err != nil {
		t.Fatal(err)
	}
	rs.Stop()
	if _, err := refusing.Admit(ctx, req("refused")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("the default gate admitted without Redis: %v", err)
	}
	// Priority first (account 2), then account 1 once 2 is at its concurrency limit.
	var held []Lease
	for i, want := range []int64{2, 1, 1} {
		l, err := g.Admit(ctx, req("r"+string(rune('a'+i))))
		if err != nil || !l.Local() || l.AccountID != want {
			t.Fatalf("admission %d without Redis: lease %+v, %v; want a local one on account %d", i, l, err, want)
		}
		held = append(held, l)
	}
	_, err = g.Admit(ctx, req("over"))
	refusal(err, 429, "tollgate_concurrency_limit", "concurrency limit of 3")
	if strings.Contains(err.Error(), "waited") {
		t.Fatalf("a local refusal says it waited: %v", err)
	}
	if err := g.Complete(ctx, held[0], stream, []byte("{}"), 5); !errors.Is(err, ErrLocal) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("completing a local lease: %v, want ErrLocal", err)
	}
	// The freed slot takes the next request, on the freed account.
	l, err = g.Admit(ctx, req("again"))
	if err != nil || l.AccountID != 2 {
		t.Fatalf("after a completion: lease %+v, %v; want account 2", l, err)
	}
	held[0] = l
	if ok, err := g.Checkpoint(ctx, l, []byte("{}")); ok || err != nil {
		t.Fatalf("checkpoint of a local lease: %v, %v; want nothing kept and no error", ok, err)
	}
	// Failover: account 2 out of rotation (Block fails in Redis but holds here), so
	// account 2's request moves to account 1; with no candidate left, no account.
	if err := g.Block(ctx, 2, time.Now().Add(time.Minute)); err == nil {
		t.Fatal("Block reached a stopped Redis")
	}
	fo := req("again")
	fo.Candidates = cands[:1]
	if err := g.Failover(ctx, &held[0], fo); err != nil || held[0].AccountID != 1 {
		t.Fatalf("failover: %+v, %v; want account 1", held[0], err)
	}
	fo.Candidates = nil
	if err := g.Failover(ctx, &held[0], fo); !errors.Is(err, ErrNoAccount) {
		t.Fatalf("failover with no candidate: %v", err)
	}
	for _, l := range held {
		g.Complete(ctx, l, stream, nil, 0) //nolint:errcheck // ErrLocal
	}
	if n := len(g.local.inflight); n != 0 {
		t.Fatalf("counts left after every lease completed: %v", g.local.inflight)
	}
	// Account 2 is blocked here: the next request goes to account 1.
	l, err = g.Admit(ctx, req("blocked"))
	if err != nil || l.AccountID != 1 {
		t.Fatalf("with account 2 blocked: lease %+v, %v", l, err)
	}
	g.Complete(ctx, l, stream, nil, 0) //nolint:errcheck

	// The key's requests per minute, counted here.
	rpm := req("rpm")
	rpm.KeyID, rpm.KeyRPM = 8, 2
	sameMinute(t)
	for i := range 2 {
		rpm.RequestID = "rpm" + string(rune('a'+i))
		l, err := g.Admit(ctx, rpm)
		if err != nil {
			t.Fatalf("request %d of an RPM of 2: %v", i, err)
		}
		g.Complete(ctx, l, stream, nil, 0) //nolint:errcheck
	}
	_, err = g.Admit(ctx, rpm)
	refusal(err, 429, "tollgate_rate_limit", "2 requests per minute")

	// The wallet and the caps, read from the ledger for each request.
	balance.Store(0)
	_, err = g.Admit(ctx, req("broke"))
	refusal(err, 402, "tollgate_insufficient_balance", "balance is used up")
	balance.Store(1_000_000_000)
	capped := req("capped")
	capped.KeyDailyCap = 100
	spent.Store(100)
	_, err = g.Admit(ctx, capped)
	refusal(err, 429, "tollgate_spend_cap", "")
	spent.Store(99)
	if l, err := g.Admit(ctx, capped); err != nil {
		t.Fatalf("under the cap: %v", err)
	} else {
		g.Complete(ctx, l, stream, nil, 0) //nolint:errcheck
	}
	// Neither Redis nor the ledger: nothing can be checked.
	down := errors.New("connection refused")
	loaderErr.Store(&down)
	if _, err := g.Admit(ctx, req("nothing")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("without the ledger either: %v, want ErrUnavailable", err)
	}
	loaderErr.Store(nil)
	if n := g.AdmittedWithoutRedis(); n != 8 {
		t.Fatalf("%d admissions counted without Redis, want 8", n)
	}

	// Usage stored meanwhile left counters to reset; once Redis is back the probe resets
	// them before admission goes back to Redis.
	if err := g.ResetCounters(ctx, Stored{UserID: 9, KeyID: 7, Time: at}); err == nil {
		t.Fatal("a reset reached a stopped Redis")
	}
	rs.Start()
	// Redis is probed every localProbeEvery: admissions meanwhile stay local.
	deadline := time.Now().Add(10 * localProbeEvery)
	for {
		l, err = g.Admit(ctx, req("back"))
		if err != nil {
			t.Fatalf("with Redis back: %v", err)
		}
		if !l.Local() {
			break
		}
		g.Complete(ctx, l, stream, nil, 0) //nolint:errcheck
		if time.Now().After(deadline) {
			t.Fatalf("still admitting without Redis %s after it returned", 10*localProbeEvery)
		}
		time.Sleep(localProbeEvery / 4)
	}
	if n := g.PendingResets(); n != 0 {
		t.Fatalf("%d resets pending once Redis admitted", n)
	}
	if err := g.Complete(ctx, l, stream, nil, 0); err != nil {
		t.Fatal(err)
	}
}
