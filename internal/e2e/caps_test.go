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
			for i := 0; i < 3; i++ {
				if status, e := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
					t.Fatalf("request %d under the cap: %d %+v", i, status, e)
				}
			}
			status, e := s.post(t, s.seeded.DemoKey, smallBody)
			if status != 429 || e.Error.Type != "tollgate_spend_cap" || !strings.Contains(e.Error.Message, c.msg) {
				t.Fatalf("over the cap: %d %+v", status, e)
			}
			// Redis forgets the counters; they come back from the ledger's usage events.
			s.ingest(3)
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
