package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/fakellm"
)

// TestSpendCaps: a key's daily and monthly caps and a user's daily cap refuse at
// admission once reached, and the counters reload from the recorded usage when Redis
// has lost them.
func TestSpendCaps(t *testing.T) {
	for _, c := range []struct{ name, set, msg string }{
		{"key daily", "UPDATE api_keys SET daily_cap_nano = %d", "API key's daily spending cap"},
		{"key monthly", "UPDATE api_keys SET monthly_cap_nano = %d", "API key's monthly spending cap"},
		{"user daily", "UPDATE users SET daily_cap_nano = %d", "account's daily spending cap"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t)
			s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
				return fakellm.Behavior{InputTokens: 1000, OutputTokens: 100}
			})
			one := s.expectedBilled(fakellm.Usage{InputTokens: 1000, OutputTokens: 100})
			s.exec(t, fmt.Sprintf(c.set, one*5/2))
			// A cap of 2.5 requests admits 3. The counter moves in the completion, which
			// runs just after each response, so a fourth request sent right after the third
			// may still be admitted — the documented overshoot of one in-flight request.
			served := 0
			for {
				status, e := s.post(t, s.seeded.DemoKey, smallBody)
				if status == 200 {
					served++
					if served > 4 {
						t.Fatalf("%d requests served under a cap worth 2.5", served)
					}
					continue
				}
				if status != 429 || e.Error.Type != "tollgate_spend_cap" || !strings.Contains(e.Error.Message, c.msg) {
					t.Fatalf("over the cap: %d %+v", status, e)
				}
				break
			}
			if served < 3 {
				t.Fatalf("only %d requests served under a cap worth 2.5", served)
			}
			// Redis forgets the counters; they come back from the ledger's usage events.
			s.ingest(served)
			iter := s.rdb.Scan(context.Background(), 0, s.prefix+"spend:*", 100).Iterator()
			for iter.Next(context.Background()) {
				s.rdb.Del(context.Background(), iter.Val())
			}
			if status, e := s.post(t, s.seeded.DemoKey, smallBody); status != 429 || e.Error.Type != "tollgate_spend_cap" {
				t.Fatalf("after Redis lost the counter: %d %+v", status, e)
			}
		})
	}
}
