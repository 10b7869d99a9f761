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

// newReserveGate is a gate on rdb with reservations waiting idle for their request and
// its releases running.
func newReserveGate(t *testing.T, rdb *redis.Client, prefix string, idle time.Duration, balance int64) *Gate {
	t.Helper()
	g := NewGate(rdb, prefix, func(context.Context, int64) (int64, error) { return balance, nil }, nil,
		Options{ReserveIdle: idle, MaxWait: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go g.Run(ctx)
	return g
}

// reserveGate is newReserveGate on the test Redis, with its round trips counted.
func reserveGate(t *testing.T, idle time.Duration, balance int64) (*Gate, *redis.Client, string, *pipelineCounter) {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	trips := &pipelineCounter{}
	rdb.AddHook(trips)
	return newReserveGate(t, rdb, prefix, idle, balance), rdb, prefix, trips
}

// sameMinute waits, if need be, so that the next few seconds fall in one UTC minute
// (the RPM window): tests that count it must not straddle two.
func sameMinute(t *testing.T) {
	if left := 60 - time.Now().Unix()%60; left < 5 {
		time.Sleep(time.Duration(left) * time.Second)
	}
}

// madeSince returns a gate's reservations made since made0.
func madeSince(g *Gate, made0 int64) int64 {
	made, _, _ := g.Reservations()
	return made - made0
}

// TestReservedAdmission: once a run of requests is busy, each completion admits the next
// request of the same shape in its own pipeline, and that request is admitted without a
// round trip; a reservation nobody takes gives back its leases and its RPM count.
func TestReservedAdmission(t *testing.T) {
	const idle = 300 * time.Millisecond
	g, rdb, prefix, trips := reserveGate(t, idle, 1_000_000_000)
	ctx := context.Background()
	sameMinute(t)
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
	if n := madeSince(g, 0); n != 0 {
		t.Fatalf("%d reservations after one request", n)
	}
	// The second comes soon after the first completed: the run is busy, its completion
	// reserves an admission for the third, which holds a lease in every set.
	if l := serve("r2"); l.Reserved {
		t.Fatal("r2 took a reservation nobody made")
	}
	if n := madeSince(g, 0); n != 1 {
		t.Fatalf("%d reservations after the second request, want 1", n)
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
	if made, taken, _ := g.Reservations(); made != 2 || taken != 1 {
		t.Fatalf("made %d taken %d, want 2 and 1", made, taken)
	}
	if n := rpm(); n != 4 {
		t.Fatalf("RPM window counts %d, want 4", n)
	}

	// Nobody comes: after the idle time it is released — leases, and its RPM count.
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, _, released := g.Reservations(); released == 1 {
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

	// A request that comes longer than the idle time after the last completion starts a
	// new run: it reserves nothing; the next one does.
	serve("r4")
	if n := madeSince(g, 2); n != 0 {
		t.Fatalf("a request after a pause reserved %d", n)
	}
	serve("r5")
	if n := madeSince(g, 2); n != 1 {
		t.Fatalf("the second request of the new run reserved %d, want 1", n)
	}
	// Requests side by side make a run too: the second of two admitted together (the
	// first not completed yet) reserves at its completion.
	burst := func(id string) Request {
		r := req(id)
		r.Session = "7:burst"
		return r
	}
	x1, _ := g.Admit(ctx, burst("x1"))
	x2, _ := g.Admit(ctx, burst("x2"))
	made0, _, _ := g.Reservations()
	x2.Again = true
	g.Complete(ctx, x2, stream, nil, 0)
	if n := madeSince(g, made0); n != 1 {
		t.Fatalf("the second of two requests side by side reserved %d, want 1", n)
	}
	g.Complete(ctx, x1, stream, nil, 0)

	// A request of another shape (another session) never takes it.
	l, err := g.Admit(ctx, Request{RequestID: "x", UserID: 9, KeyID: 7, UserConcurrency: 5, KeyConcurrency: 5, KeyRPM: 100,
		Session: "7:other", Candidates: one})
	if err != nil || l.Reserved {
		t.Fatalf("another session took the reservation: %+v %v", l, err)
	}
	g.Complete(ctx, l, stream, nil, 0)
}

// TestReservationGivesWay: what a reservation holds never refuses a request or keeps it
// waiting on the proxy that holds it. None is made while a request waits for one of its
// scopes, nor when it would take the last free unit of a limit, nor when the balance is
// used up; a request that finds a limit full takes back the process's reservations on it;
// blocking its account, flushing its key's sessions or shutting down give it back.
func TestReservationGivesWay(t *testing.T) {
	ctx := context.Background()
	one := []Candidate{{ID: 1, Priority: 1, Weight: 1}}
	// run serves two requests of session a: the second's completion may reserve.
	run := func(t *testing.T, g *Gate, prefix string, r Request) {
		t.Helper()
		r.Session = "7:a"
		for i := range 2 {
			r.RequestID = "a" + strconv.Itoa(i)
			l, err := g.Admit(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			l.Again = true
			g.Complete(ctx, l, prefix+"usage", []byte(`{}`), 1)
		}
	}

	t.Run("concurrency", func(t *testing.T) {
		g, _, prefix, _ := reserveGate(t, time.Minute, 1_000_000_000)
		r := Request{UserID: 9, KeyID: 7, UserConcurrency: 2, Candidates: one}
		run(t, g, prefix, r)
		if n := madeSince(g, 0); n != 1 {
			t.Fatalf("%d reservations with the user's 2 slots free, want 1", n)
		}
		// Session b takes the last free slot, then wants another: the reservation of
		// session a goes back at once, rather than after the idle time.
		r.Session = "7:b"
		r.RequestID = "b1"
		b1, err := g.Admit(ctx, r)
		if err != nil || b1.Reserved {
			t.Fatalf("b1: %+v %v", b1, err)
		}
		start := time.Now()
		r.RequestID = "b2"
		b2, err := g.Admit(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if b2.Waited > 100*time.Millisecond || time.Since(start) > 500*time.Millisecond {
			t.Fatalf("b2 waited %s for the slot a reservation held", b2.Waited)
		}
		if _, _, released := g.Reservations(); released != 1 {
			t.Fatalf("%d reservations released for b2, want session a's", released)
		}
		g.Complete(ctx, b1, prefix+"usage", nil, 0)
		g.Complete(ctx, b2, prefix+"usage", nil, 0)

		// A busy run's completion while another request holds the other slot: a
		// reservation would take the last free one, so none is made. (Another user: b2
		// found user 9's limit full, which stops reservations for it a while.)
		made0, _, _ := g.Reservations()
		r.UserID = 10
		r.Session, r.RequestID = "7:d", "d0"
		d, _ := g.Admit(ctx, r)
		g.Complete(ctx, d, prefix+"usage", nil, 0)
		r.Session, r.RequestID = "7:c", "c"
		c, _ := g.Admit(ctx, r)
		r.Session, r.RequestID = "7:d", "d1"
		d, _ = g.Admit(ctx, r)
		d.Again = true
		g.Complete(ctx, d, prefix+"usage", nil, 0)
		if n := madeSince(g, made0); n != 0 {
			t.Fatalf("a reservation took the user's last free slot (%d made)", n)
		}
		g.Complete(ctx, c, prefix+"usage", nil, 0)
	})

	t.Run("rpm", func(t *testing.T) {
		g, _, prefix, _ := reserveGate(t, time.Minute, 1_000_000_000)
		sameMinute(t)
		// With 2 of 3 requests of the minute used, a reservation would take the last.
		run(t, g, prefix, Request{UserID: 9, KeyID: 8, KeyRPM: 3, Candidates: one})
		if n := madeSince(g, 0); n != 0 {
			t.Fatalf("a reservation took the key's last request of the minute (%d made)", n)
		}
		r := Request{UserID: 9, KeyID: 7, KeyRPM: 4, Candidates: one}
		run(t, g, prefix, r) // two requests, and a reservation: 3 of 4 counted
		if n := madeSince(g, 0); n != 1 {
			t.Fatalf("%d reservations with 2 of 4 requests used, want 1", n)
		}
		// Session b makes the 4th request, then a 5th would be refused — but one of the
		// 4 is the reservation's: it goes back, and the request is admitted.
		r.Session = "7:b"
		for i := range 2 {
			r.RequestID = "b" + strconv.Itoa(i)
			l, err := g.Admit(ctx, r)
			if err != nil {
				t.Fatalf("request %d of session b: %v", i+1, err)
			}
			g.Complete(ctx, l, prefix+"usage", nil, 0)
		}
		// Now 4 real requests: the next is refused, and no reservation takes a unit.
		r.RequestID = "b3"
		var refusal *Refusal
		if _, err := g.Admit(ctx, r); !errors.As(err, &refusal) || refusal.Type != "tollgate_rate_limit" {
			t.Fatalf("a 5th request in the minute: %v", err)
		}
	})

	t.Run("waiter", func(t *testing.T) {
		g, rdb, prefix, _ := reserveGate(t, time.Second, 1_000_000_000)
		req := func(id, session string) Request {
			return Request{RequestID: id, UserID: 9, KeyID: 7, UserConcurrency: 2, Session: session, Candidates: one}
		}
		l, _ := g.Admit(ctx, req("a1", "7:a"))
		l.Again = true
		g.Complete(ctx, l, prefix+"usage", nil, 0)
		l, _ = g.Admit(ctx, req("a2", "7:a")) // the run is busy now
		c1, _ := g.Admit(ctx, req("c1", "7:c"))
		waited := make(chan error, 1)
		go func() {
			w, err := g.Admit(ctx, req("b", "7:b")) // the user's 2 slots are taken: b waits
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
				t.Fatal("the request never waited")
			}
		}
		l.Again = true
		g.Complete(ctx, l, prefix+"usage", nil, 0) // frees a slot, and must not reserve it
		if err := <-waited; err != nil {
			t.Fatalf("the waiting request: %v", err)
		}
		if n := madeSince(g, 0); n != 0 {
			t.Fatalf("%d reservations made while a request waited", n)
		}
		g.Complete(ctx, c1, prefix+"usage", nil, 0)
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
		if n := madeSince(g, 0); n != 0 {
			t.Fatalf("%d reservations with the balance used up", n)
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
		var made int64
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
			if n := madeSince(g, made); n < 1 {
				t.Fatal("no reservation made")
			}
			made, _, _ = g.Reservations()
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
		if err := g.Block(ctx, 1, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := g.Unblock(ctx, 1); err != nil {
			t.Fatal(err)
		}
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
		// And no more are made.
		reserve0, _, _ := g.Reservations()
		for i := range 3 {
			r.RequestID = "late" + strconv.Itoa(i)
			l, _ := g.Admit(ctx, r)
			l.Again = true
			g.Complete(ctx, l, prefix+"usage", nil, 0)
		}
		if n, _ := rdb.ZCard(ctx, prefix+"conc:a:1").Result(); n != 0 {
			t.Fatalf("%d leases held after ReleaseReserved (%d made)", n, madeSince(g, reserve0))
		}
	})
}

// TestReservationsForgottenWithRedis: when Redis loses its state (a restart without
// persistence, a flush), the reservations it held the leases of are not used: the next
// request of the run is admitted in full, against the limits Redis knows.
func TestReservationsForgottenWithRedis(t *testing.T) {
	rs := testenv.RedisServer(t) // its own server: the test flushes it
	opts, _ := redis.ParseURL(rs.URL)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx := context.Background()
	g := newReserveGate(t, rdb, "r:", time.Minute, 1_000_000_000)
	r := Request{UserID: 9, KeyID: 7, UserConcurrency: 3, Session: "7:s", Candidates: []Candidate{{ID: 1, Priority: 1, Weight: 1}}}
	for i := range 2 {
		r.RequestID = "a" + strconv.Itoa(i)
		l, _ := g.Admit(ctx, r)
		l.Again = true
		g.Complete(ctx, l, "r:usage", nil, 0)
	}
	if n := madeSince(g, 0); n != 1 {
		t.Fatalf("%d reservations, want 1", n)
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// Any script call finds Redis without its scripts: the reservations go.
	other := r
	other.RequestID, other.Session = "o", "7:other"
	l, err := g.Admit(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	g.Complete(ctx, l, "r:usage", nil, 0)
	r.RequestID = "a2"
	l, err = g.Admit(ctx, r)
	if err != nil || l.Reserved {
		t.Fatalf("after Redis lost its state a request took a reservation: %+v %v", l, err)
	}
	if n, _ := rdb.ZCard(ctx, "r:conc:u:9").Result(); n != 1 {
		t.Fatalf("the user's lease set holds %d, want the one request", n)
	}
	l.Again = true
	g.Complete(ctx, l, "r:usage", nil, 0) // the run is busy: it reserves again
	if n := madeSince(g, 1); n != 1 {
		t.Fatalf("%d reservations after Redis came back, want 1", n)
	}

	// Redis goes away: the first call that fails drops them too, so a request of the
	// run is not admitted from a reservation while nothing can vouch for it.
	rs.Stop()
	if _, err := g.Admit(ctx, other); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("admission without Redis: %v", err)
	}
	r.RequestID = "a3"
	if l, err := g.Admit(ctx, r); err == nil || l.Reserved {
		t.Fatalf("with Redis down a request took a reservation: %+v %v", l, err)
	}
}

// TestReservationsHoldLimitsAcrossProxies: two gates (two proxies) share one user's
// concurrency limit of 4. Two runs side by side stay under it with their reservations
// (most requests admitted without a round trip, no request waits); reservations are
// leases like any others, so the user never holds more than 4. A request on one proxy
// that finds the limit full because of the other proxy's idle reservation waits at
// most until that is released.
func TestReservationsHoldLimitsAcrossProxies(t *testing.T) {
	const limit = 4
	const idle = time.Second
	g1, rdb, prefix, _ := reserveGate(t, idle, 1_000_000_000)
	g2 := newReserveGate(t, rdb, prefix, idle, 1_000_000_000)
	ctx := context.Background()
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
	req := func(id, session string) Request {
		return Request{RequestID: id, UserID: 9, KeyID: 7, UserConcurrency: limit, Session: session, Candidates: one}
	}

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w, g := range []*Gate{g1, g2} {
		wg.Go(func() {
			for i := range 25 {
				l, err := g.Admit(ctx, req("s"+strconv.Itoa(w)+"-"+strconv.Itoa(i), "7:run"+strconv.Itoa(w)))
				if err != nil {
					errs <- err
					return
				}
				time.Sleep(2 * time.Millisecond)
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
		t.Fatal(err)
	}
	_, taken1, _ := g1.Reservations()
	_, taken2, _ := g2.Reservations()
	if taken1+taken2 < 40 {
		t.Fatalf("two runs under the limit took %d reservations for 50 requests, want most", taken1+taken2)
	}
	if n, _ := rdb.Exists(ctx, prefix+"waiting:u:9").Result(); n != 0 {
		t.Fatal("a request waited while two runs stayed under the limit")
	}
	if n := most.Load(); n > limit {
		t.Fatalf("the user held %d leases, limit %d", n, limit)
	}

	// Each proxy now holds its run's last reservation. Proxy 2 drops its own (a session
	// flush) and fills the 3 other slots; its next request finds the limit full because
	// of proxy 1's idle reservation, which proxy 2 cannot take back: it waits until
	// proxy 1 releases it.
	if _, err := g2.FlushSessions(ctx, 7); err != nil {
		t.Fatal(err)
	}
	time.Sleep(idle/4 + 100*time.Millisecond) // proxy 2's sweep releases it
	var held []Lease
	for i := range 3 {
		l, err := g2.Admit(ctx, req("f"+strconv.Itoa(i), "7:fill"))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
	}
	start := time.Now()
	l, err := g2.Admit(ctx, req("late", "7:late"))
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took > idle+time.Second {
		t.Fatalf("the request waited %s for a slot an idle reservation held (idle %s)", took, idle)
	}
	t.Logf("a request waited %s for the slot another proxy's idle reservation held", took.Round(time.Millisecond))
	if n := most.Load(); n > limit {
		t.Fatalf("the user held %d leases, limit %d", n, limit)
	}
	for _, l := range append(held, l) {
		g2.Complete(ctx, l, prefix+"usage", nil, 0)
	}
}

// TestLongRequestKeepsItsRun: a run of long requests (an agent's streams, each longer
// than the idle time, a short pause between them) still reserves: the run's shape is not
// forgotten while one of its requests runs.
func TestLongRequestKeepsItsRun(t *testing.T) {
	const idle = 100 * time.Millisecond
	g, _, prefix, _ := reserveGate(t, idle, 1_000_000_000)
	ctx := context.Background()
	r := Request{UserID: 9, KeyID: 7, Session: "7:agent", Candidates: []Candidate{{ID: 1, Priority: 1, Weight: 1}}}
	var reserved int
	for i := range 4 {
		r.RequestID = "turn" + strconv.Itoa(i)
		l, err := g.Admit(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if l.Reserved {
			reserved++
		}
		time.Sleep(5 * idle) // the stream runs well past the sweeps' forgetting time
		l.Again = true
		g.Complete(ctx, l, prefix+"usage", nil, 0)
		time.Sleep(idle / 4) // the tool call between two turns
	}
	// Turn 0 starts the run, turn 1 makes it busy, turns 2 and 3 are reserved.
	if reserved != 2 {
		t.Fatalf("%d of 4 turns admitted from a reservation, want 2", reserved)
	}
}
