package limit

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testenv"
)

// TestMergedCompletionsMatchSeparateOnes: the completions of one user and key that leave
// in one pipeline, merged into one call of complete_many.lua, leave Redis as the same
// completions made one by one: the same leases released (user, key and two accounts'
// sets), the same usage events in the same order, the same debits of the balance
// snapshot and the spend counters, a release message for every scope that had one, and
// each completion's reply 1. The merged call is sent after a SCRIPT FLUSH, so it is also
// loaded and sent again.
func TestMergedCompletionsMatchSeparateOnes(t *testing.T) {
	srv := testenv.RedisServer(t) // private: SCRIPT FLUSH must not disturb other tests
	opts, err := redis.ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	const base = "m:"
	ctx := context.Background()
	const n = 7
	type result struct {
		balance  string
		spend    [3]string
		leases   []int64
		events   []string
		released []string
	}
	run := func(prefix string, merged bool) result {
		g := NewGate(rdb, prefix, func(context.Context, int64) (int64, error) { return 1_000_000_000, nil },
			func(context.Context, int64, int64, time.Time) (int64, error) { return 5_000, nil }, Options{ReserveIdle: -1})
		var leases []Lease
		for i := range n {
			l, err := g.Admit(ctx, Request{RequestID: "r" + strconv.Itoa(i), UserID: 9, KeyID: 7,
				UserConcurrency: 50, KeyConcurrency: 50, KeyDailyCap: 1 << 40, KeyMonthlyCap: 1 << 40, UserDailyCap: 1 << 40,
				Candidates: []Candidate{{ID: int64(1 + i%2), Priority: 1, Weight: 1}}})
			if err != nil {
				t.Fatal(err)
			}
			leases = append(leases, l)
		}
		// Someone waits for the user's scope: each completion announces its release.
		rdb.Set(ctx, prefix+"waiting:u:9", "1", time.Minute)
		sub := rdb.Subscribe(ctx, g.releaseChannel())
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		event := func(i int) ([]byte, int64) {
			switch i {
			case 2:
				return nil, 0 // consumed nothing
			case 4:
				return []byte(`{"n":4,"free":true}`), 0
			}
			return []byte(fmt.Sprintf(`{"n":%d}`, i)), int64(1000 + i)
		}
		stream := prefix + "usage"
		if merged {
			now := time.Now()
			var calls []*scriptCall
			for i, l := range leases {
				ev, billed := event(i)
				c := g.completeCall(l, stream, ev, billed, now)
				// merge.go reads the call's arguments by position.
				if len(c.args) != completeLen || c.args[argMember] != l.RequestID || c.args[argStream] != stream ||
					c.args[argBalance] != prefix+"bal:9" || c.args[argKeySet] != prefix+"conc:k:7" || !c.mergeable {
					t.Fatalf("complete.lua's arguments moved: %v", c.args)
				}
				calls = append(calls, c)
			}
			if sent := mergeCompletions(calls); len(sent) != 1 || sent[0].merged == nil {
				t.Fatalf("%d completions of one user and key went as %d calls", n, len(sent))
			}
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			g.batch.exec(calls)
			for i, c := range calls {
				if res, err := c.cmd.Int64(); err != nil || res != 1 {
					t.Fatalf("merged completion %d: %d %v", i, res, err)
				}
			}
		} else {
			for i, l := range leases {
				ev, billed := event(i)
				if err := g.Complete(ctx, l, stream, ev, billed); err != nil {
					t.Fatal(err)
				}
			}
		}
		var r result
		now := time.Now()
		for i, k := range CounterKeys(prefix, 9, 7, now) {
			v, _ := rdb.Get(ctx, k).Result()
			if i == 0 {
				r.balance = v
			} else {
				r.spend[i-1] = v
			}
		}
		for _, set := range []string{"conc:u:9", "conc:k:7", "conc:a:1", "conc:a:2"} {
			c, _ := rdb.ZCard(ctx, prefix+set).Result()
			r.leases = append(r.leases, c)
		}
		entries, _ := rdb.XRange(ctx, stream, "-", "+").Result()
		for _, e := range entries {
			r.events = append(r.events, e.Values["e"].(string))
		}
		ch := sub.Channel()
		for deadline := time.After(500 * time.Millisecond); ; {
			select {
			case m := <-ch:
				if !slices.Contains(r.released, m.Payload) {
					r.released = append(r.released, m.Payload)
				}
				continue
			case <-deadline:
			}
			break
		}
		slices.Sort(r.released)
		return r
	}
	one, many := run(base+"one:", false), run(base+"many:", true)
	if fmt.Sprint(one) != fmt.Sprint(many) {
		t.Fatalf("one by one: %+v\nmerged:     %+v", one, many)
	}
	// And they did something: every lease released, the debits made, six events.
	if !slices.Equal(one.leases, []int64{0, 0, 0, 0}) || len(one.events) != n-1 || len(one.released) != 2 {
		t.Fatalf("one by one: %+v", one)
	}
	var billed int64
	for i := range n {
		if i != 2 && i != 4 {
			billed += int64(1000 + i)
		}
	}
	if one.balance != strconv.FormatInt(1_000_000_000-billed, 10) || one.spend[0] != strconv.FormatInt(5_000+billed, 10) {
		t.Fatalf("balance %s, key's spend today %s; want %d and %d", one.balance, one.spend[0], 1_000_000_000-billed, 5_000+billed)
	}
}
