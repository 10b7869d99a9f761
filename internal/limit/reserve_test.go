package limit

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testenv"
)

// commands counts the Redis round trips (commands and pipelines) a client makes.
type commands struct{ n atomic.Int64 }

func (c *commands) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.n.Add(1); return next(ctx, cmd) }
}
func (c *commands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { c.n.Add(1); return next(ctx, cmds) }
}

// reserveGate is a gate with reservations waiting idle for their request, its releases
// running, on a client whose round trips are counted.
func reserveGate(t *testing.T, idle time.Duration, balance int64) (*Gate, *redis.Client, string, *commands) {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	trips := &commands{}
	rdb.AddHook(trips)
	g := NewGate(rdb, prefix, func(context.Context, int64) (int64, error) { return balance, nil }, nil,
		Options{ReserveIdle: idle, MaxWait: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go g.Run(ctx)
	return g, rdb, prefix, trips
}

// TestReservedAdmission: once a run of requests is busy, each completion admits the next
// request of the same shape in its own pipeline, and that request is admitted without a
// round trip; a reservation nobody takes gives back its leases and its RPM count.
func TestReservedAdmission(t *testing.T) {
	g, rdb, prefix, trips := reserveGate(t, 300*time.Millisecond, 1_000_000_000)
	ctx := context.Background()
	one := []Candidate{{ID: 1, Priority: 1, Weight: 1}}
	req := func(id string) Request {
		return Request{RequestID: id, UserID: 9, KeyID: 7, UserConcurrency: 5, KeyConcurrency: 5, KeyRPM: 100,
			Session: "7:s", Candidates: one}
	}
	sets := []string{prefix + "conc:u:9", prefix + "conc:k:7", prefix + "conc:a:1"}
	held := func() []int64 {
		var n []int64
		for _, s := range sets {
			c, _ := rdb.ZCard(ctx, s).Result()
			n = append(n, c)
		}
		return n
	}
	rpm := func() int64 {
		n, _ := rdb.Get(ctx, prefix+"rpm:7:"+strconv.FormatInt(time.Now().Unix()/60, 10)).Int64()
		return n
	}
	stream := prefix + "usage"
	serve := func(id string) Lease {
		t.Helper()
		l, err := g.Admit(ctx, req(id))
		if err != nil {
			t.Fatal(err)
		}
		l.Again = true
		if err := g.Complete(ctx, l, stream, []byte(`{}`), 10); err != nil {
			t.Fatal(err)
		}
		return l
	}

	// The first request of a run reserves nothing: nothing says another is coming.
	if l := serve("r1"); l.Reserved || l.RequestID != "r1" {
		t.Fatalf("first request: %+v", l)
	}
	if made, _, _ := g.Reserve(); made != 0 {
		t.Fatalf("%d reservations after one request", made)
	}
	// The second comes soon after the first completed: the run is busy, its completion
	// reserves an admission for the third, which holds a lease in every set.
	if l := serve("r2"); l.Reserved {
		t.Fatal("r2 took a reservation nobody made")
	}
	if made, _, _ := g.Reserve(); made != 1 {
		t.Fatalf("%d reservations after the second request, want 1", made)
	}
	if n := held(); n[0] != 1 || n[1] != 1 || n[2] != 1 {
		t.Fatalf("lease sets hold %v with one reservation, want 1 each", n)
	}
	if n := rpm(); n != 3 {
		t.Fatalf("RPM window counts %d, want 3 (two requests and the reservation)", n)
	}

	// The third is admitted from the reservation, with no round trip, under its id.
	before := trips.n.Load()
	l3, err := g.Admit(ctx, req("r3"))
	if err != nil {
		t.Fatal(err)
	}
	if d := trips.n.Load() - before; d != 0 || !l3.Reserved || l3.RequestID == "r3" || l3.AccountID != 1 {
		t.Fatalf("third request: %d round trips, lease %+v", d, l3)
	}
	if score, err := rdb.ZScore(ctx, sets[2], l3.RequestID).Result(); err != nil || score <= float64(time.Now().UnixMilli()) {
		t.Fatalf("the reserved lease is not live in the account set: %v %v", score, err)
	}
	// Its completion reserves the next, in the same round trip.
	l3.Again = true
	before = trips.n.Load()
	if err := g.Complete(ctx, l3, stream, []byte(`{}`), 10); err != nil {
		t.Fatal(err)
	}
	if d := trips.n.Load() - before; d != 1 {
		t.Fatalf("completion with a reservation took %d round trips, want 1", d)
	}
	if made, taken, _ := g.Reserve(); made != 2 || taken != 1 {
		t.Fatalf("made %d taken %d, want 2 and 1", made, taken)
	}
	if n := rpm(); n != 4 {
		t.Fatalf("RPM window counts %d, want 4", n)
	}

	// Nobody comes: after the idle time it is released — leases, and its RPM count.
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, _, released := g.Reserve(); released == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reservation was never released")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := held(); n[0] != 0 || n[1] != 0 || n[2] != 0 {
		t.Fatalf("lease sets hold %v after the release, want none", n)
	}
	if n := rpm(); n != 3 {
		t.Fatalf("RPM window counts %d after the release, want 3 (the requests made)", n)
	}
	if n, _ := rdb.XLen(ctx, stream).Result(); n != 3 {
		t.Fatalf("%d usage events for 3 requests", n)
	}

	// A request of another shape (another session) never takes it; a request whose
	// last one completed long ago reserves nothing.
	serve("r4")
	serve("r5")
	if l, err := g.Admit(ctx, Request{RequestID: "x", UserID: 9, KeyID: 7, UserConcurrency: 5, KeyConcurrency: 5, KeyRPM: 100,
		Session: "7:other", Candidates: one}); err != nil || l.Reserved {
		t.Fatalf("another session took the reservation: %+v %v", l, err)
	} else {
		g.Complete(ctx, l, stream, nil, 0)
	}
}

// TestReservationGivesWay: a reservation is never made while a request waits for one of
// its scopes, so it cannot keep a slot from a waiting request for long; nor when the
// balance is used up; and blocking its account, flushing its key's sessions or shutting
// down give it back.
func TestReservationGivesWay(t *testing.T) {
	ctx := context.Background()
	one := []Candidate{{ID: 1, Priority: 1, Weight: 1}}

	t.Run("waiter", func(t *testing.T) {
		g, rdb, prefix, _ := reserveGate(t, time.Second, 1_000_000_000)
		req := func(id, session string) Request {
			return Request{RequestID: id, UserID: 9, KeyID: 7, UserConcurrency: 1, Session: session, Candidates: one}
		}
		busy := func(id string) Lease {
			l, err := g.Admit(ctx, req(id, "7:a"))
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
		l := busy("a1")
		l.Again = true
		g.Complete(ctx, l, prefix+"usage", nil, 0)
		l = busy("a2") // the run is busy now; a2 holds the user's only slot
		waited := make(chan error, 1)
		go func() {
			w, err := g.Admit(ctx, req("b", "7:b")) // another session waits for the slot
			if err == nil {
				g.Complete(ctx, w, prefix+"usage", nil, 0)
			}
			waited <- err
		}()
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if n, _ := rdb.Exists(ctx, prefix+"waiting:u:9").Result(); n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the second request never waited")
			}
		}
		l.Again = true
		start := time.Now()
		g.Complete(ctx, l, prefix+"usage", nil, 0)
		if err := <-waited; err != nil {
			t.Fatalf("the waiting request: %v", err)
		}
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Fatalf("the waiting request got the slot %s after it was freed", took)
		}
		if made, _, _ := g.Reserve(); made != 0 {
			t.Fatalf("%d reservations made while a request waited", made)
		}
	})

	t.Run("balance", func(t *testing.T) {
		g, _, prefix, _ := reserveGate(t, time.Second, 100)
		r := Request{RequestID: "p1", UserID: 9, KeyID: 7, Candidates: one}
		l, _ := g.Admit(ctx, r)
		l.Again = true
		g.Complete(ctx, l, prefix+"usage", []byte(`{}`), 10)
		r.RequestID = "p2"
		l, _ = g.Admit(ctx, r)
		l.Again = true
		g.Complete(ctx, l, prefix+"usage", []byte(`{}`), 90) // the balance is used up now
		if made, _, _ := g.Reserve(); made != 0 {
			t.Fatalf("%d reservations with the balance used up", made)
		}
		r.RequestID = "p3"
		var refusal *Refusal
		if _, err := g.Admit(ctx, r); !errors.As(err, &refusal) || refusal.Status != 402 {
			t.Fatalf("after the balance ran out: %v", err)
		}
	})

	t.Run("block, flush, shutdown", func(t *testing.T) {
		g, rdb, prefix, _ := reserveGate(t, time.Minute, 1_000_000_000)
		r := Request{UserID: 9, KeyID: 7, Session: "7:s", Candidates: one}
		reserve := func() {
			t.Helper()
			for i := range 2 {
				r.RequestID = "q" + strconv.Itoa(i)
				l, err := g.Admit(ctx, r)
				if err != nil {
					t.Fatal(err)
				}
				l.Again = true
				g.Complete(ctx, l, prefix+"usage", nil, 0)
			}
			if n, _ := rdb.ZCard(ctx, prefix+"conc:a:1").Result(); n < 1 {
				t.Fatal("no reservation held")
			}
		}
		untaken := func(what string) {
			t.Helper()
			r.RequestID = "after-" + what
			l, err := g.Admit(ctx, r)
			if err != nil || l.Reserved {
				t.Fatalf("after %s a request took a reservation: %+v %v", what, l, err)
			}
			g.Complete(ctx, l, prefix+"usage", nil, 0)
		}
		reserve()
		if err := g.Block(ctx, 1, time.Now().Add(time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		untaken("block")
		reserve()
		if _, err := g.FlushSessions(ctx, 7); err != nil {
			t.Fatal(err)
		}
		untaken("flush")
		reserve()
		g.ReleaseReserved(ctx)
		if n, _ := rdb.ZCard(ctx, prefix+"conc:a:1").Result(); n != 0 {
			t.Fatalf("%d leases left after ReleaseReserved", n)
		}
	})
}

// TestReservationsHoldLimitsAcrossProxies: two gates (two proxies) serve busy runs of
// one user under a concurrency limit of 4. Reservations are leases like any others: the
// user never holds more than 4. Two runs side by side stay under the limit with their
// reservations and are admitted without round trips; six runs contend for the slots,
// and then no reservation keeps a waiting request from a slot for long.
func TestReservationsHoldLimitsAcrossProxies(t *testing.T) {
	const limit = 4
	g1, rdb, prefix, _ := reserveGate(t, time.Second, 1_000_000_000)
	g2 := NewGate(rdb, prefix, func(context.Context, int64) (int64, error) { return 1_000_000_000, nil }, nil,
		Options{ReserveIdle: time.Second, MaxWait: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g2.Run(ctx)
	one := []Candidate{{ID: 1, Priority: 1, Weight: 1}}
	var most atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	go func() { // live leases in the user's set, sampled
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n, _ := rdb.ZCount(ctx, prefix+"conc:u:9", strconv.FormatInt(time.Now().UnixMilli(), 10), "+inf").Result(); n > most.Load() {
				most.Store(n)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	runs := func(phase string, workers int) {
		t.Helper()
		var running atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			g := []*Gate{g1, g2}[w%2]
			wg.Go(func() {
				for i := range 25 {
					l, err := g.Admit(ctx, Request{RequestID: phase + strconv.Itoa(w) + "-" + strconv.Itoa(i), UserID: 9, KeyID: 7,
						UserConcurrency: limit, Session: "7:" + phase + strconv.Itoa(w), Candidates: one})
					if err != nil {
						errs <- err
						return
					}
					if n := running.Add(1); n > limit {
						errs <- errors.New("more requests running than the limit")
					}
					time.Sleep(2 * time.Millisecond)
					running.Add(-1)
					l.Again = true
					if err := g.Complete(ctx, l, prefix+"usage", nil, 0); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("%s: %v", phase, err)
		}
		if n := most.Load(); n > limit {
			t.Fatalf("%s: the user held %d leases, limit %d", phase, n, limit)
		}
	}

	runs("side-by-side", 2)
	_, taken1, _ := g1.Reserve()
	_, taken2, _ := g2.Reserve()
	if taken1+taken2 < 40 {
		t.Fatalf("two runs under the limit took %d reservations for 50 requests, want most", taken1+taken2)
	}
	if n, _ := rdb.Exists(ctx, prefix+"waiting:u:9").Result(); n != 0 {
		t.Fatal("a request waited while two runs stayed under the limit")
	}

	start := time.Now()
	runs("contending", 6)
	// 150 requests of 2 ms, 4 at a time: under 100 ms of work. A waiter held up by idle
	// reservations would wait up to a second each time.
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("150 contending requests took %s", took)
	}
}
