package limit

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testenv"
)

// replyDropper is a TCP relay in front of Redis that, once armed, lets the next call
// carrying a script (EVALSHA) reach Redis and run there, then throws away its reply and
// cuts the connection: a reply lost on the way back, the one failure a client cannot
// tell from a call that never ran.
type replyDropper struct {
	ln    net.Listener
	to    string
	armed atomic.Bool
	hits  atomic.Int64 // replies dropped
	wg    sync.WaitGroup
}

func newReplyDropper(t *testing.T, redisAddr string) *replyDropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &replyDropper{ln: ln, to: redisAddr}
	d.wg.Add(1)
	go d.accept()
	t.Cleanup(func() { ln.Close(); d.wg.Wait() })
	return d
}

func (d *replyDropper) accept() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", d.to)
		if err != nil {
			c.Close()
			continue
		}
		var drop atomic.Bool // this connection's next reply is to be lost
		d.wg.Add(2)
		go func() { // client → Redis
			defer d.wg.Done()
			defer u.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if bytes.Contains(bytes.ToLower(buf[:n]), []byte("evalsha")) && d.armed.CompareAndSwap(true, false) {
						drop.Store(true)
					}
					if _, werr := u.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() { // Redis → client
			defer d.wg.Done()
			defer c.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := u.Read(buf)
				if n > 0 && drop.Load() {
					d.hits.Add(1)
					return // the reply is lost and the connection cut
				}
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// TestLostReplyReleasesReservation: a completion that carries a reservation reaches Redis
// and runs, but its reply is lost. The gate cannot know whether the reservation was made,
// nor on which candidate account, so it releases it on every candidate: its leases and
// its RPM count go back within the next sweep, not at the lease TTL (a minute here).
func TestLostReplyReleasesReservation(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	drop := newReplyDropper(t, rdb.Options().Addr)
	faulty := redis.NewClient(&redis.Options{Addr: drop.ln.Addr().String(), Protocol: 2, MaxRetries: -1, DB: rdb.Options().DB})
	t.Cleanup(func() { faulty.Close() })
	const idle = 300 * time.Millisecond
	g := newReserveGate(t, faulty, prefix, idle, 1_000_000_000)
	ctx := context.Background()
	sameMinute(t)
	// Account 2 is preferred, so the reservation lands on the second candidate: releasing
	// only on the first would leave it held.
	two := []Candidate{{ID: 1, Priority: 2, Weight: 1}, {ID: 2, Priority: 1, Weight: 1}}
	req := func(id string) Request {
		return Request{RequestID: id, UserID: 9, KeyID: 7, UserConcurrency: 5, KeyConcurrency: 5, KeyRPM: 100,
			Session: "7:s", Candidates: two}
	}
	sets := []string{prefix + "conc:u:9", prefix + "conc:k:7", prefix + "conc:a:1", prefix + "conc:a:2"}
	held := func() (n int64) {
		for _, s := range sets {
			c, _ := rdb.ZCard(ctx, s).Result()
			n += c
		}
		return n
	}
	rpm := func() int64 {
		n, _ := rdb.Get(ctx, prefix+"rpm:7:"+strconv.FormatInt(time.Now().Unix()/60, 10)).Int64()
		return n
	}
	stream := prefix + "usage"

	// Two requests make the run busy: the second's completion reserves the third's
	// admission, which the third takes.
	for _, id := range []string{"r1", "r2"} {
		l, err := g.Admit(ctx, req(id))
		if err != nil {
			t.Fatal(err)
		}
		l.Again = true
		if err := g.Complete(ctx, l, stream, []byte(`{}`), 10); err != nil {
			t.Fatal(err)
		}
	}
	l3, err := g.Admit(ctx, req("r3"))
	if err != nil || !l3.Reserved {
		t.Fatalf("the third request was not admitted from a reservation: %+v %v", l3, err)
	}

	// Its completion, carrying the next reservation, runs in Redis; the reply is lost.
	drop.armed.Store(true)
	l3.Again = true
	if err := g.Complete(ctx, l3, stream, []byte(`{}`), 10); err == nil {
		t.Fatal("the completion succeeded although its reply was lost")
	}
	if drop.hits.Load() != 1 {
		t.Fatalf("%d replies dropped, want 1", drop.hits.Load())
	}
	if n, _ := rdb.XLen(ctx, stream).Result(); n != 3 {
		t.Fatalf("%d usage events: the completion whose reply was lost did not run", n)
	}
	// What the lost reservation holds in Redis: a lease in the user's, the key's and one
	// account's set, and one request of the minute.
	if n := held(); n != 3 {
		t.Fatalf("%d leases right after the lost reply, want the reservation's 3", n)
	}
	if n, _ := rdb.ZCard(ctx, prefix+"conc:a:2").Result(); n != 1 {
		t.Fatalf("the lost reservation holds %d leases on account 2, want 1", n)
	}
	if n := rpm(); n != 4 {
		t.Fatalf("RPM window counts %d, want 4 (three requests and the lost reservation)", n)
	}
	deadline := time.Now().Add(3 * time.Second)
	for held() != 0 || rpm() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after the sweep: %d leases held and RPM %d, want 0 and 3", held(), rpm())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// And the next request of the run is not admitted from it.
	l4, err := g.Admit(ctx, req("r4"))
	if err != nil || l4.Reserved {
		t.Fatalf("a request took the lost reservation: %+v %v", l4, err)
	}
	g.Complete(ctx, l4, stream, nil, 0)
}
