package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/fakellm"
)

// groupID is the demo user's group.
func (s *stack) groupID(t *testing.T) int64 {
	t.Helper()
	var id int64
	if err := s.pool.QueryRow(context.Background(), "SELECT group_id FROM users WHERE id = $1", s.seeded.DemoUserID).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestRMBPegBilling: a group priced with an RMB peg bills official × peg ÷ live USD/CNY
// × multiplier, rounded once, and records the rate it used. The worked example: an
// official $0.10 with peg ¥2 and rate ¥7.20 bills 27,777,778 nano-USD.
func TestRMBPegBilling(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	// A model priced so that 1,000 input tokens cost exactly $0.10.
	s.exec(t, `INSERT INTO prices (provider, pattern, match, effective_from, input_pico, output_pico,
		cache_write_5m_pico, cache_write_1h_pico, cache_read_pico) VALUES ('anthropic', 'claude-peg-test', 'exact', now() - interval '1 day', 100000000, 0, 0, 0, 0)`)
	s.exec(t, `INSERT INTO group_price_factors (group_id, provider, multiplier_ppm, peg_rmb_micro) VALUES (`+itoa(s.groupID(t))+`, 'anthropic', 1000000, 2000000)`)
	body := `{"model":"claude-peg-test","max_tokens":8,"messages":[{"role":"user","content":"peg"}]}`

	// No exchange rate yet: refused, not guessed.
	s.publish("prices:")
	waitStatus(t, s, body, 400, "no USD/CNY rate")

	s.exec(t, `INSERT INTO fx_rates (base, quote, rate_micro, source) VALUES ('USD', 'CNY', 7200000, 'test')`)
	s.publish("prices:")
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{InputTokens: 1000, OutputTokens: 1} })
	waitStatus(t, s, body, 200, "")
	s.ingest(1)
	var official, billed, fx, num, den int64
	err := s.pool.QueryRow(ctx, "SELECT official_cost_nano, billed_cost_nano, fx_rate_micro, factor_num, factor_den FROM usage_events").Scan(&official, &billed, &fx, &num, &den)
	if err != nil {
		t.Fatal(err)
	}
	if official != 100_000_000 || billed != 27_777_778 || fx != 7_200_000 {
		t.Fatalf("official %d billed %d fx %d (factor %d/%d); want 100000000, 27777778, 7200000", official, billed, fx, num, den)
	}
	if num*72 != den*20 {
		t.Fatalf("factor %d/%d, want 2/7.2", num, den)
	}
}

// waitStatus posts until the proxy answers with the status (and message part).
func waitStatus(t *testing.T, s *stack, body string, status int, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, e := s.post(t, s.seeded.DemoKey, body)
		if got == status && strings.Contains(e.Error.Message, msg) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %d %+v, want %d %q", got, e, status, msg)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// TestPriceEditAppliesFromItsTime: a new price row applies to requests from its
// effective time on; events billed before keep their price and cost.
func TestPriceEditAppliesFromItsTime(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
		return fakellm.Behavior{InputTokens: 1000, OutputTokens: 10}
	})
	if status, _ := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
		t.Fatal(status)
	}
	s.ingest(1)
	var oldPrice, oldBilled int64
	s.pool.QueryRow(ctx, "SELECT price_id, billed_cost_nano FROM usage_events").Scan(&oldPrice, &oldBilled)

	// Double the price from now on.
	s.exec(t, `INSERT INTO prices (provider, pattern, match, effective_from, input_pico, output_pico, cache_write_5m_pico,
		cache_write_1h_pico, cache_read_pico, note)
		SELECT provider, pattern, match, now(), input_pico*2, output_pico*2, cache_write_5m_pico*2, cache_write_1h_pico*2,
		cache_read_pico*2, 'doubled' FROM prices WHERE pattern = '`+model+`' AND match = 'exact' ORDER BY effective_from DESC LIMIT 1`)
	s.publish("prices:")
	deadline := time.Now().Add(5 * time.Second)
	for n := 2; ; n++ {
		if status, _ := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
			t.Fatal(status)
		}
		s.ingest(n)
		var price, billed int64
		s.pool.QueryRow(ctx, "SELECT price_id, billed_cost_nano FROM usage_events ORDER BY id DESC LIMIT 1").Scan(&price, &billed)
		if price != oldPrice {
			if billed != 2*oldBilled {
				t.Fatalf("billed %d at the new price, want %d", billed, 2*oldBilled)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new price was never applied")
		}
	}
	var first, firstBilled int64
	s.pool.QueryRow(ctx, "SELECT price_id, billed_cost_nano FROM usage_events ORDER BY id LIMIT 1").Scan(&first, &firstBilled)
	if first != oldPrice || firstBilled != oldBilled {
		t.Fatalf("the first event changed: price %d billed %d", first, firstBilled)
	}
}

// TestUnpricedModelAndFallbackRule: a model without a price is refused (never served
// free) until the operator adds a fallback rule — a prefix rule with an empty pattern —
// which then prices it.
func TestUnpricedModelAndFallbackRule(t *testing.T) {
	s := newStack(t)
	body := `{"model":"claude-brand-new","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`
	seq := s.fake.LastSeq()
	if status, e := s.post(t, s.seeded.DemoKey, body); status != 400 || e.Error.Type != "tollgate_unpriced_model" {
		t.Fatalf("unpriced: %d %+v", status, e)
	}
	if n := len(s.fake.ServedSince(seq)); n != 0 {
		t.Fatal("an unpriced model reached the upstream")
	}
	s.exec(t, `INSERT INTO prices (provider, pattern, match, effective_from, input_pico, output_pico, cache_write_5m_pico,
		cache_write_1h_pico, cache_read_pico, note) VALUES ('anthropic', '', 'prefix', now() - interval '1 minute', 5000000, 25000000, 6250000, 10000000, 500000, 'fallback')`)
	s.publish("prices:")
	waitStatus(t, s, body, 200, "")
	s.ingest(1)
	var billed int64
	var pattern string
	s.pool.QueryRow(context.Background(), "SELECT e.billed_cost_nano, p.pattern FROM usage_events e JOIN prices p ON p.id = e.price_id").Scan(&billed, &pattern)
	if billed <= 0 || pattern != "" {
		t.Fatalf("billed %d with price pattern %q", billed, pattern)
	}
}
