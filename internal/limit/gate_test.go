package limit

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testenv"
)

// TestSessionsFlushAndUnblock: an operator can flush a key's sticky sessions and put an
// account out of rotation back in; both change what the next admission picks.
func TestSessionsFlushAndUnblock(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	g := NewGate(rdb, prefix, func(context.Context, int64) (int64, error) { return 1_000_000_000, nil }, nil, Options{})
	admit := func(id string) int64 { return admitSession(t, g, prefix, id) }
	first := admit("r1")
	other := map[int64]int64{1: 2, 2: 1}[first]
	for i := range 10 {
		if got := admit("again" + string(rune('a'+i))); got != first {
			t.Fatalf("sticky session moved from %d to %d", first, got)
		}
	}
	// Block the bound account: the session moves; unblock it: still on the new one.
	if err := g.Block(ctx, first, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := admit("r2"); got != other {
		t.Fatalf("with %d blocked the session went to %d", first, got)
	}
	if err := g.Unblock(ctx, first); err != nil {
		t.Fatal(err)
	}
	if got := admit("r3"); got != other {
		t.Fatalf("after unblocking, the session left %d for %d", other, got)
	}
	// Flushing the key's sessions forgets the binding (both accounts are equal again, so
	// the next choice is free; the binding key itself must be gone).
	n, err := g.FlushSessions(ctx, 7)
	if err != nil || n != 1 {
		t.Fatalf("flushed %d bindings (%v), want 1", n, err)
	}
	if exists, _ := rdb.Exists(ctx, prefix+"sticky:7:s").Result(); exists != 0 {
		t.Fatal("binding still there after the flush")
	}
}

// admitSession admits request id of user 9's key 7 in the sticky session "7:s", to one
// of accounts 1 and 2, completes it at once, and returns the account it went to.
func admitSession(t *testing.T, g *Gate, prefix, id string) int64 {
	t.Helper()
	ctx := context.Background()
	two := []Candidate{{ID: 1, Priority: 1, Weight: 1}, {ID: 2, Priority: 1, Weight: 1}}
	l, err := g.Admit(ctx, Request{RequestID: id, UserID: 9, KeyID: 7, Session: "7:s", Candidates: two})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Complete(ctx, l, prefix+"usage", nil, 0); err != nil {
		t.Fatal(err)
	}
	return l.AccountID
}

// TestCheckpointBilledOnce: a checkpointed request whose lease expired is an orphan; the
// sweep's completion bills it, and the completion of the proxy that was still serving it
// (it lost Redis for longer than the TTL) bills nothing. A checkpoint after completion
// writes nothing.
func TestCheckpointBilledOnce(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	g := NewGate(rdb, prefix, func(context.Context, int64) (int64, error) { return 1_000_000_000, nil }, nil,
		Options{LeaseTTL: 300 * time.Millisecond})
	stream := prefix + "usage"
	one := []Candidate{{ID: 1, Priority: 1, Weight: 1}}
	l, err := g.Admit(ctx, Request{RequestID: "r1", UserID: 9, KeyID: 7, Candidates: one})
	if err != nil {
		t.Fatal(err)
	}
	if kept, err := g.Checkpoint(ctx, l, []byte(`{"rid":"r1"}`)); err != nil || !kept {
		t.Fatalf("checkpoint kept=%v err=%v", kept, err)
	}
	if o, err := g.Orphans(ctx, 10); err != nil || len(o) != 0 {
		t.Fatalf("orphans while the lease lives: %v %v", o, err)
	}
	time.Sleep(400 * time.Millisecond) // not renewed: the lease and the journal entry expire
	o, err := g.Orphans(ctx, 10)
	if err != nil || len(o) != 1 || o[0].RequestID != "r1" || string(o[0].Event) != `{"rid":"r1"}` {
		t.Fatalf("orphans = %+v, %v", o, err)
	}
	swept := l
	swept.Orphan = true
	if err := g.Complete(ctx, swept, stream, o[0].Event, 5); err != nil {
		t.Fatalf("sweep completion: %v", err)
	}
	l.Journaled = true
	if err := g.Complete(ctx, l, stream, []byte(`{"rid":"r1","final":true}`), 7); !errors.Is(err, ErrSwept) {
		t.Fatalf("late completion: %v, want ErrSwept", err)
	}
	if n, _ := rdb.XLen(ctx, stream).Result(); n != 1 {
		t.Fatalf("%d usage events, want 1", n)
	}
	if kept, err := g.Checkpoint(ctx, l, []byte(`{"rid":"r1"}`)); err != nil || kept {
		t.Fatalf("checkpoint after completion kept=%v err=%v", kept, err)
	}
	if n, _ := rdb.HLen(ctx, prefix+"journal:ev").Result(); n != 0 {
		t.Fatalf("%d journal entries left", n)
	}

	// The other order: the proxy completes first, a sweep that read the entry before
	// bills nothing.
	l2, err := g.Admit(ctx, Request{RequestID: "r2", UserID: 9, KeyID: 7, Candidates: one})
	if err != nil {
		t.Fatal(err)
	}
	if kept, _ := g.Checkpoint(ctx, l2, []byte(`{"rid":"r2"}`)); !kept {
		t.Fatal("checkpoint r2 not kept")
	}
	l2.Journaled = true
	if err := g.Complete(ctx, l2, stream, []byte(`{"rid":"r2","final":true}`), 7); err != nil {
		t.Fatal(err)
	}
	late := l2
	late.Journaled, late.Orphan = false, true
	if err := g.Complete(ctx, late, stream, []byte(`{"rid":"r2"}`), 5); !errors.Is(err, ErrSwept) {
		t.Fatalf("late sweep: %v, want ErrSwept", err)
	}

	// Redis lost the journal (a restart without persistence): the serving proxy still
	// bills its request.
	l3, err := g.Admit(ctx, Request{RequestID: "r3", UserID: 9, KeyID: 7, Candidates: one})
	if err != nil {
		t.Fatal(err)
	}
	if kept, _ := g.Checkpoint(ctx, l3, []byte(`{"rid":"r3"}`)); !kept {
		t.Fatal("checkpoint r3 not kept")
	}
	rdb.Del(ctx, prefix+"journal", prefix+"journal:ev")
	l3.Journaled = true
	if err := g.Complete(ctx, l3, stream, []byte(`{"rid":"r3","final":true}`), 7); err != nil {
		t.Fatalf("completion after the journal was lost: %v", err)
	}
	if n, _ := rdb.XLen(ctx, stream).Result(); n != 3 {
		t.Fatalf("%d usage events, want 3 (r1 swept, r2 and r3 by their proxy)", n)
	}

	// A sweep that read an expired entry, which its proxy renewed just after: nothing
	// happens, the entry stays for the proxy's own completion.
	l4, err := g.Admit(ctx, Request{RequestID: "r4", UserID: 9, KeyID: 7, Candidates: one})
	if err != nil {
		t.Fatal(err)
	}
	if kept, _ := g.Checkpoint(ctx, l4, []byte(`{"rid":"r4"}`)); !kept {
		t.Fatal("checkpoint r4 not kept")
	}
	time.Sleep(400 * time.Millisecond)
	if o, _ := g.Orphans(ctx, 10); len(o) != 1 || o[0].RequestID != "r4" {
		t.Fatalf("orphans = %+v", o)
	}
	rdb.ZAdd(ctx, prefix+"journal", redis.Z{Score: float64(time.Now().Add(time.Minute).UnixMilli()), Member: "r4"}) // the renewal
	sweep4 := l4
	sweep4.Orphan = true
	if err := g.Complete(ctx, sweep4, stream, []byte(`{"rid":"r4"}`), 5); !errors.Is(err, ErrAlive) {
		t.Fatalf("sweep of a renewed request: %v, want ErrAlive", err)
	}
	if n, _ := rdb.HLen(ctx, prefix+"journal:ev").Result(); n != 1 {
		t.Fatalf("%d journal entries after the refused sweep, want 1", n)
	}
	l4.Journaled = true
	if err := g.Complete(ctx, l4, stream, []byte(`{"rid":"r4","final":true}`), 7); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.XLen(ctx, stream).Result(); n != 4 {
		t.Fatalf("%d usage events, want 4", n)
	}
}

func TestFormatDay(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, 11, 23, 23, 59, 59, 999, time.UTC), time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 31, 23, 0, 0, 0, time.FixedZone("x", -5*3600)), // 2027-01-01 04:00 UTC
		time.Date(1969, 12, 31, 12, 0, 0, 0, time.UTC), time.Date(2026, 11, 23, 1, 0, 0, 0, time.FixedZone("y", 9*3600)),
	} {
		f := formatDay(tm)
		d, m := f.d, f.m
		if d != tm.UTC().Format("20060102") || m != tm.UTC().Format("200601") {
			t.Errorf("formatDay(%v) = %s %s", tm, d, m)
		}
	}
}

// TestUncountedLeasesArePurged: the lone unlimited account's lease set is not counted at
// admission, so nothing purges it there every time; a dead process's lease in it must
// still go (about one admission in 64 purges), and completion must release a lease
// from every set it sits in — only those admission wrote for a live lease, all of them
// for a lease rebuilt from the journal.
func TestUncountedLeasesArePurged(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	g := NewGate(rdb, prefix, func(context.Context, int64) (int64, error) { return 1_000_000_000, nil }, nil, Options{})
	one := []Candidate{{ID: 3, Priority: 1, Weight: 1}}
	accSet := prefix + "conc:a:3"
	dead := time.Now().Add(-time.Minute).UnixMilli()
	if err := rdb.ZAdd(ctx, accSet, redis.Z{Score: float64(dead), Member: "dead"}).Err(); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		l, err := g.Admit(ctx, Request{RequestID: "p" + strconv.Itoa(i), UserID: 9, KeyID: 7, Candidates: one})
		if err != nil {
			t.Fatal(err)
		}
		if l.holdsUser() || l.holdsKey() {
			t.Fatal("a lease without user or key limits claims their sets")
		}
		if err := g.Complete(ctx, l, prefix+"usage", nil, 0); err != nil {
			t.Fatal(err)
		}
		if score, err := rdb.ZScore(ctx, accSet, "dead").Result(); errors.Is(err, redis.Nil) {
			break
		} else if err != nil || score != float64(dead) {
			t.Fatalf("dead lease: %v %v", score, err)
		}
		if i == 3000 { // (63/64)^3000 ≈ 3e-21
			t.Fatal("the expired lease was never purged")
		}
	}
	if n, _ := rdb.ZCard(ctx, accSet).Result(); n != 0 {
		t.Fatalf("%d leases left in the account's set", n)
	}

	// With limits, the lease sits in all three sets and completion empties them.
	l, err := g.Admit(ctx, Request{RequestID: "lim", UserID: 9, KeyID: 7, UserConcurrency: 5, KeyConcurrency: 5, Candidates: one})
	if err != nil {
		t.Fatal(err)
	}
	sets := []string{prefix + "conc:u:9", prefix + "conc:k:7", accSet}
	for _, s := range sets {
		if n, _ := rdb.ZCard(ctx, s).Result(); n != 1 {
			t.Fatalf("%s holds %d leases, want 1", s, n)
		}
	}
	if err := g.Complete(ctx, l, prefix+"usage", nil, 0); err != nil {
		t.Fatal(err)
	}
	// A lease rebuilt from the journal (no record of its sets) releases from all.
	l2, err := g.Admit(ctx, Request{RequestID: "orphan", UserID: 9, KeyID: 7, UserConcurrency: 5, KeyConcurrency: 5, Candidates: one})
	if err != nil {
		t.Fatal(err)
	}
	rebuilt := Lease{RequestID: l2.RequestID, UserID: 9, KeyID: 7, AccountID: l2.AccountID}
	if err := g.Complete(ctx, rebuilt, prefix+"usage", nil, 0); err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		if n, _ := rdb.ZCard(ctx, s).Result(); n != 0 {
			t.Fatalf("%s holds %d leases after completion", s, n)
		}
	}
}

// TestExpiredLeasesNeverRefuse: a dead process's expired leases fill every scope to its
// limit; admission counts only live leases (the exact count it takes when the cheap
// one says the limit is near) and admits. A live lease at the limit still refuses.
func TestExpiredLeasesNeverRefuse(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	g := NewGate(rdb, prefix, func(context.Context, int64) (int64, error) { return 1_000_000_000, nil }, nil, Options{MaxWait: 200 * time.Millisecond})
	sets := []string{prefix + "conc:u:9", prefix + "conc:k:7", prefix + "conc:a:3"}
	dead := float64(time.Now().Add(-time.Minute).UnixMilli())
	for _, s := range sets {
		for _, m := range []string{"dead1", "dead2"} {
			if err := rdb.ZAdd(ctx, s, redis.Z{Score: dead, Member: m}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	req := Request{RequestID: "live", UserID: 9, KeyID: 7, UserConcurrency: 2, KeyConcurrency: 2,
		Candidates: []Candidate{{ID: 3, Priority: 1, Weight: 1, MaxConcurrency: 2}, {ID: 4, Priority: 2, Weight: 1, MaxConcurrency: 1}}}
	l, err := g.Admit(ctx, req)
	if err != nil {
		t.Fatalf("expired leases refused the admission: %v", err)
	}
	if l.AccountID != 3 {
		t.Fatalf("admitted on account %d, want 3 (its expired leases are not load)", l.AccountID)
	}
	// A user limit of 1 with the live lease held: full, refused after the wait.
	req.RequestID, req.UserConcurrency = "second", 1
	var refusal *Refusal
	if _, err := g.Admit(ctx, req); !errors.As(err, &refusal) || refusal.Status != 429 {
		t.Fatalf("a live lease at the user's limit of 1: %v, want a 429 refusal", err)
	}
}

// TestStickyBindingWrites: a session's binding is rewritten when its account changes and
// at most once per tenth of the sticky TTL otherwise; a binding in the older format (the
// bare account id) still binds.
func TestStickyBindingWrites(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	g := NewGate(rdb, prefix, func(context.Context, int64) (int64, error) { return 1_000_000_000, nil }, nil, Options{StickyTTL: time.Hour})
	key := prefix + "sticky:7:s"
	admit := func(id string) int64 { return admitSession(t, g, prefix, id) }
	first := admit("r1")
	bucket := time.Now().UnixMilli() / (3600 * 100)
	want := strconv.FormatInt(first, 10) + "@" + strconv.FormatInt(bucket, 10)
	if v, _ := rdb.Get(ctx, key).Result(); v != want && v != strconv.FormatInt(first, 10)+"@"+strconv.FormatInt(bucket+1, 10) {
		t.Fatalf("binding %q, want %q", v, want)
	}
	// Within the same tenth of the TTL the binding is not written again: a TTL shortened
	// by hand stays short.
	rdb.Expire(ctx, key, 100*time.Second)
	if got := admit("r2"); got != first {
		t.Fatalf("session moved from %d to %d", first, got)
	}
	if ttl, _ := rdb.TTL(ctx, key).Result(); ttl > 100*time.Second {
		t.Fatalf("binding rewritten within its tenth of the TTL (TTL %s)", ttl)
	}
	// Written in an earlier tenth: rewritten with the full TTL.
	rdb.Set(ctx, key, strconv.FormatInt(first, 10)+"@1", 100*time.Second)
	if got := admit("r3"); got != first {
		t.Fatalf("session moved from %d to %d", first, got)
	}
	if ttl, _ := rdb.TTL(ctx, key).Result(); ttl < 50*time.Minute {
		t.Fatalf("an old binding was not refreshed (TTL %s)", ttl)
	}
	// The bare id of the older format binds the other account and is rewritten.
	other := map[int64]int64{1: 2, 2: 1}[first]
	rdb.Set(ctx, key, strconv.FormatInt(other, 10), time.Hour)
	for i := range 5 {
		if got := admit("old" + strconv.Itoa(i)); got != other {
			t.Fatalf("a bare-id binding to %d sent the session to %d", other, got)
		}
	}
	if v, _ := rdb.Get(ctx, key).Result(); !strings.HasPrefix(v, strconv.FormatInt(other, 10)+"@") {
		t.Fatalf("binding %q after a bare-id one, want it rewritten", v)
	}
}
