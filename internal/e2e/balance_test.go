package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate/tollgate/internal/fakellm"
)

// TestZeroBalanceRefused: a user whose balance is used up gets a clear 402 in each
// protocol's shape, and nothing reaches an upstream.
func TestZeroBalanceRefused(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	bal := s.balance(s.seeded.DemoUserID)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.Exec(ctx, "INSERT INTO wallet_tx (user_id, amount_nano, kind, ref) VALUES ($1, $2, 'adjust', 'test:zero')", s.seeded.DemoUserID, -bal)
	tx.Exec(ctx, "UPDATE users SET balance_nano = 0 WHERE id = $1", s.seeded.DemoUserID)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
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
	ctx := context.Background()
	const slots = 4
	s.exec(t, fmt.Sprintf("UPDATE api_keys SET concurrency = %d", slots))
	// Every answer costs the same: fixed input and output.
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
		return fakellm.Behavior{InputTokens: 1000, OutputTokens: 100}
	})
	one := s.expectedBilled(fakellm.Usage{InputTokens: 1000, OutputTokens: 100})
	// Leave a balance worth three and a half requests.
	bal := s.balance(s.seeded.DemoUserID)
	keep := one * 7 / 2
	tx, _ := s.pool.Begin(ctx)
	tx.Exec(ctx, "INSERT INTO wallet_tx (user_id, amount_nano, kind, ref) VALUES ($1, $2, 'adjust', 'test:keep')", s.seeded.DemoUserID, keep-bal)
	tx.Exec(ctx, "UPDATE users SET balance_nano = $2 WHERE id = $1", s.seeded.DemoUserID, keep)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

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
