package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/apikey"
	"github.com/tollgate/tollgate/internal/fakellm"
	"github.com/tollgate/tollgate/internal/limit"
)

// TestZeroBalanceRefused: a user whose balance is used up gets a clear 402 in each
// protocol's shape, and nothing reaches an upstream.
func TestZeroBalanceRefused(t *testing.T) {
	s := newStack(t)
	s.setBalance(t, 0)
	seq := s.fake.LastSeq()
	status, e := s.post(t, s.seeded.DemoKey, smallBody)
	if status != 402 || e.Error.Type != "tollgate_insufficient_balance" || !strings.Contains(e.Error.Message, "top up") {
		t.Fatalf("anthropic: %d %+v", status, e)
	}
	resp, b := s.geminiPost(t, "generateContent", "", `{"contents":[{"parts":[{"text":"hi"}]}]}`)
	if resp.StatusCode != 402 || !strings.Contains(string(b), "tollgate_insufficient_balance") {
		t.Fatalf("gemini: %d %s", resp.StatusCode, b)
	}
	if n := len(s.fake.ServedSince(seq)); n != 0 {
		t.Fatalf("%d refused requests reached the upstream", n)
	}
}

// TestOverdraftBound: with a balance worth a few requests and a concurrency limit of C,
// a burst of concurrent requests overdraws by at most C requests' cost — the documented
// bound (admission checks the balance snapshot; at most C requests are in flight when
// it reaches zero).
func TestOverdraftBound(t *testing.T) {
	s := newStack(t)
	const slots = 4
	s.exec(t, fmt.Sprintf("UPDATE api_keys SET concurrency = %d", slots))
	// Every answer costs the same: fixed input and output.
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
		return fakellm.Behavior{InputTokens: 1000, OutputTokens: 100}
	})
	one := s.expectedBilled(fakellm.Usage{InputTokens: 1000, OutputTokens: 100})
	// Leave a balance worth three and a half requests.
	s.setBalance(t, one*7/2)

	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, 0
	for range 40 {
		wg.Go(func() {
			status, _ := s.post(t, s.seeded.DemoKey, smallBody)
			mu.Lock()
			defer mu.Unlock()
			switch status {
			case 200:
				ok++
			case 402:
				refused++
			default:
				t.Errorf("status %d", status)
			}
		})
	}
	wg.Wait()
	s.ingest(ok)
	final := s.balance(s.seeded.DemoUserID)
	t.Logf("%d served, %d refused; balance %d nano-USD (one request costs %d)", ok, refused, final, one)
	if final < -slots*one {
		t.Fatalf("overdraft %d exceeds the bound of %d slots × %d", -final, slots, one)
	}
	if ok < 4 || refused == 0 {
		t.Fatalf("%d served, %d refused: the balance should serve 4 and refuse the rest", ok, refused)
	}
}

// TestBalanceReloadCountsPendingUsage: a balance snapshot loaded from the ledger while
// the usage of earlier requests still waits in the Redis stream (no worker has stored it:
// workers down or behind) subtracts that usage (limit.PendingKey). Here no worker runs
// and the snapshot expires before every request, so each admission loads it again: a
// balance worth three and a half requests serves four and refuses the rest. Before the
// pending sums, every reload read the ledger's untouched balance and all twelve were
// served, three times the balance.
func TestBalanceReloadCountsPendingUsage(t *testing.T) {
	const ttl = 200 * time.Millisecond
	s := newStack(t, func(su *setup) { su.limits.SnapshotTTL = ttl })
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
		return fakellm.Behavior{InputTokens: 1000, OutputTokens: 100}
	})
	one := s.expectedBilled(fakellm.Usage{InputTokens: 1000, OutputTokens: 100})
	s.setBalance(t, one*7/2)
	ctx := context.Background()
	user := s.seeded.DemoUserID
	pend := limit.PendingKey(s.prefix, user)

	served := 0
	for i := range 12 {
		time.Sleep(ttl + 50*time.Millisecond) // the snapshot is gone: this admission reloads it
		status, e := s.post(t, s.seeded.DemoKey, smallBody)
		switch {
		case status == 200:
			served++
		case status == 402 && e.Error.Type == "tollgate_insufficient_balance":
		default:
			t.Fatalf("request %d: %d %+v", i+1, status, e)
		}
		// The completion follows the answer by a moment.
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			n, _ := s.rdb.Get(ctx, pend).Int64()
			if n == int64(served)*one {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %d served, %d nano-USD pending; want %d", served, n, int64(served)*one)
			}
		}
	}
	if served != 4 {
		t.Fatalf("%d of 12 served with a balance worth 3.5 requests and nothing stored: want 4", served)
	}

	// Stored, the debits leave the pending sum, and a snapshot loaded earlier agrees with
	// the ledger.
	s.ingest(served)
	if n, err := s.rdb.Exists(ctx, pend).Result(); err != nil || n != 0 {
		t.Fatalf("pending sum still there after ingestion: %d %v", n, err)
	}
	want := s.balance(user)
	if want != one*7/2-4*one {
		t.Fatalf("ledger balance %d, want %d", want, one*7/2-4*one)
	}
	status, _ := s.post(t, s.seeded.DemoKey, smallBody) // loads the snapshot, refused
	if status != 402 {
		t.Fatalf("after ingestion: %d, want 402", status)
	}
	if got, err := s.rdb.Get(ctx, limit.CounterKeys(s.prefix, user, 0, time.Now())[0]).Int64(); err != nil || got != want {
		t.Fatalf("snapshot %d (%v), ledger %d", got, err, want)
	}
}

// TestMoneyLimitsHoldAcrossTwoProxies: a spending cap and the balance are shared by
// every proxy. Requests alternating between two proxies stop at the key's daily cap, and
// a burst spread over both stops at the balance, each overshooting by no more than the
// documented bound: one request per concurrency slot of the key.
func TestMoneyLimitsHoldAcrossTwoProxies(t *testing.T) {
	s := newStack(t)
	second, _ := s.startProxy(t)
	proxies := []string{s.proxyURL, second}
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
		return fakellm.Behavior{InputTokens: 1000, OutputTokens: 100}
	})
	one := s.expectedBilled(fakellm.Usage{InputTokens: 1000, OutputTokens: 100})

	// The cap: worth 2.5 requests, with 2 concurrency slots. A request's debit lands in
	// its completion, which holds its slot until then, so the documented bound is the cap
	// plus one request per slot (admissions reserved ahead hold slots too): at most 4
	// served. Sequential requests alternating between the proxies run into it as soon as
	// each proxy's next request is admitted before the other's completion has landed.
	const capSlots = 2
	// The key is not cached yet: both proxies load it with the cap.
	s.exec(t, fmt.Sprintf("UPDATE api_keys SET daily_cap_nano = %d, concurrency = %d", one*5/2, capSlots))
	served, refusedInARow := 0, 0
	for i := 0; refusedInARow < 4; i++ { // until each proxy has refused twice in a row
		if i == 40 {
			t.Fatalf("still serving after %d requests under a cap worth 2.5", served)
		}
		resp, b := rawPost(t, proxies[i%2], s.seeded.DemoKey, smallBody, nil)
		if resp.StatusCode == 200 {
			served++
			refusedInARow = 0
			continue
		}
		if resp.StatusCode != 429 || !strings.Contains(string(b), "tollgate_spend_cap") {
			t.Fatalf("over the cap: %d %s", resp.StatusCode, b)
		}
		refusedInARow++
	}
	t.Logf("%d requests served under a cap worth 2.5 requests", served)
	if served < 3 || served > 2+capSlots {
		t.Fatalf("%d requests served under a cap worth 2.5 with %d slots, want 3 to %d", served, capSlots, 2+capSlots)
	}

	// The balance: worth 3.5 requests, a burst of 40 over both proxies, 4 slots. The
	// cap goes; each proxy has reloaded the key once it serves again.
	const slots = 4
	s.exec(t, fmt.Sprintf("UPDATE api_keys SET daily_cap_nano = NULL, concurrency = %d", slots))
	s.publish("key:" + hex.EncodeToString(apikey.Hash(s.seeded.DemoKey)))
	for _, p := range proxies {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			resp, b := rawPost(t, p, s.seeded.DemoKey, smallBody, nil)
			if resp.StatusCode == 200 {
				served++
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still refuses 5 s after the cap was lifted: %d %s", p, resp.StatusCode, b)
			}
		}
	}
	s.ingest(served)
	s.setBalance(t, one*7/2)
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	for i := range 40 {
		wg.Go(func() {
			resp, b := rawPost(t, proxies[i%2], s.seeded.DemoKey, smallBody, nil)
			switch resp.StatusCode {
			case 200:
				ok.Add(1)
			case 402:
				refused.Add(1)
			default:
				t.Errorf("status %d %s", resp.StatusCode, b)
			}
		})
	}
	wg.Wait()
	s.ingest(served + int(ok.Load()))
	final := s.balance(s.seeded.DemoUserID)
	t.Logf("%d served, %d refused; balance %d nano-USD (one request costs %d)", ok.Load(), refused.Load(), final, one)
	if final < -slots*one {
		t.Fatalf("overdraft %d exceeds the bound of %d slots × %d", -final, slots, one)
	}
	if ok.Load() < 4 || refused.Load() == 0 {
		t.Fatalf("%d served, %d refused: the balance should serve 4 and refuse the rest", ok.Load(), refused.Load())
	}
}

// setBalance adjusts the demo user's balance to nano with a ledger entry, and drops its
// snapshot in Redis, as a credit from the console does: the next admission loads the
// ledger's balance.
func (s *stack) setBalance(t *testing.T, nano int64) {
	t.Helper()
	ctx := context.Background()
	user := s.seeded.DemoUserID
	bal := s.balance(user)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, "INSERT INTO wallet_tx (user_id, amount_nano, kind, ref) VALUES ($1, $2, 'adjust', $3)",
		user, nano-bal, "test:set:"+strconv.FormatInt(time.Now().UnixNano(), 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE users SET balance_nano = $2 WHERE id = $1", user, nano); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.Del(ctx, s.prefix+"bal:"+strconv.FormatInt(user, 10)).Err(); err != nil {
		t.Fatal(err)
	}
}
