package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/fakellm"
)

// TestOpenAIRateLimitSignals: Codex's usage_limit_reached keeps an account out until its
// window resets; a plain rate_limit_exceeded only cools it briefly; quota headers are
// recorded for the console; insufficient_quota needs the operator (error state).
func TestOpenAIRateLimitSignals(t *testing.T) {
	cases := []struct {
		name     string
		behavior fakellm.Behavior
		state    string
		check    func(t *testing.T, until *time.Time)
	}{
		{"usage_limit_reached", fakellm.Behavior{Status: 429, ErrorCode: "usage_limit_reached", Headers: map[string]string{"retry-after": "7200"}},
			"limited", func(t *testing.T, until *time.Time) {
				if until == nil || until.Sub(time.Now().Add(2*time.Hour)).Abs() > 5*time.Second {
					t.Fatalf("until %v, want about two hours from now (resets_at)", until)
				}
			}},
		{"rate_limit_exceeded", fakellm.Behavior{Status: 429, ErrorCode: "rate_limit_exceeded"},
			"limited", func(t *testing.T, until *time.Time) {
				if until == nil || until.After(time.Now().Add(6*time.Second)) {
					t.Fatalf("until %v, want a brief cooldown", until)
				}
			}},
		{"insufficient_quota", fakellm.Behavior{Status: 429, ErrorCode: "insufficient_quota"}, "error", func(t *testing.T, until *time.Time) {}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, func(su *setup) {
				su.accounts = []accountSpec{
					{name: "oa-bad", apiKey: "sk-oa-bad", priority: 1, provider: "openai"},
					{name: "oa-good", apiKey: "sk-oa-good", priority: 2, provider: "openai"},
				}
			})
			s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
				if r.Header.Get("Authorization") == "Bearer sk-oa-bad" {
					return c.behavior
				}
				return fakellm.Behavior{}
			})
			raw := s.rawOpenAI(t, "/v1/chat/completions", `{"model":"`+gptModel+`","messages":[{"role":"user","content":"hi"}]}`)
			if !strings.Contains(raw, "Hello from fakellm") {
				t.Fatalf("client got %s", raw)
			}
			_, until := s.accountState("oa-bad", c.state)
			c.check(t, until)
		})
	}
}

func TestQuotaHeadersRecorded(t *testing.T) {
	s := newStack(t)
	s.rawOpenAI(t, "/v1/chat/completions", `{"model":"`+gptModel+`","messages":[{"role":"user","content":"hi"}]}`)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var raw []byte
		s.pool.QueryRow(t.Context(), "SELECT ratelimit FROM accounts WHERE name = 'fakellm-openai'").Scan(&raw)
		var snap map[string]string
		json.Unmarshal(raw, &snap)
		if snap["x-ratelimit-remaining-requests"] != "" && snap["observed_at"] != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("quota snapshot %s", raw)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
