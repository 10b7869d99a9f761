package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/fakellm"
)

const smallBody = `{"model":"` + model + `","max_tokens":32,"messages":[{"role":"user","content":"hello there"}]}`

// servedBy returns the upstream credential of each served entry since seq.
func (s *stack) servedBy(since int64) []string {
	var out []string
	for _, e := range s.fake.ServedSince(since) {
		out = append(out, e.Header.Get("X-Api-Key"))
	}
	return out
}

// accountState polls PostgreSQL until the account's persisted state is want.
func (s *stack) accountState(name, want string) (reason string, until *time.Time) {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var state string
		err := s.pool.QueryRow(context.Background(), "SELECT state, state_reason, state_until FROM accounts WHERE name = $1", name).Scan(&state, &reason, &until)
		if err != nil {
			s.t.Fatal(err)
		}
		if state == want {
			return reason, until
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("account %s: state %q (%s), want %q", name, state, reason, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func twoAccounts(su *setup) {
	su.noDemo = true
	su.accounts = []accountSpec{
		{name: "acct-a", apiKey: "sk-a", priority: 100, weight: 1},
		{name: "acct-b", apiKey: "sk-b", priority: 100, weight: 1},
	}
}

func TestStickySessionMovesOnlyWhenItsAccountDegrades(t *testing.T) {
	s := newStack(t, twoAccounts)
	session := map[string]string{"X-Claude-Code-Session-Id": "9b2f6c1e-session"}
	seq := s.fake.LastSeq()
	for turn := 0; turn < 20; turn++ {
		if resp, b := rawPost(t, s.proxyURL, s.seeded.DemoKey, smallBody, session); resp.StatusCode != 200 {
			t.Fatalf("turn %d: %d %s", turn, resp.StatusCode, b)
		}
	}
	by := s.servedBy(seq)
	first := by[0]
	for i, k := range by {
		if k != first {
			t.Fatalf("turn %d went to %s, earlier turns to %s: the session did not stick", i, k, first)
		}
	}
	other := map[string]string{"sk-a": "sk-b", "sk-b": "sk-a"}[first]

	// The bound account starts answering 529: the next turn fails over cleanly and the
	// session moves to the other account.
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
		if r.Header.Get("X-Api-Key") == first {
			return fakellm.Behavior{Status: 529}
		}
		return fakellm.Behavior{}
	})
	seq = s.fake.LastSeq()
	resp, b := rawPost(t, s.proxyURL, s.seeded.DemoKey, smallBody, session)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "Hello from fakellm") {
		t.Fatalf("turn after the 529: %d %s", resp.StatusCode, b)
	}
	if got := s.servedBy(seq); len(got) != 2 || got[0] != first || got[1] != other {
		t.Fatalf("attempts went to %v, want [%s %s]", got, first, other)
	}
	name := map[string]string{"sk-a": "acct-a", "sk-b": "acct-b"}[first]
	if reason, until := s.accountState(name, "cooling"); !strings.Contains(reason, "529") || until == nil || !until.After(time.Now()) {
		t.Fatalf("degraded account: reason %q until %v", reason, until)
	}

	// The old account recovers and is back in rotation, but the session stays where it moved.
	s.fake.SetScript(nil)
	if err := s.rdb.Del(context.Background(), s.prefix+"astate:"+strconv.FormatInt(s.accountID(name), 10)).Err(); err != nil {
		t.Fatal(err)
	}
	seq = s.fake.LastSeq()
	for turn := 0; turn < 10; turn++ {
		rawPost(t, s.proxyURL, s.seeded.DemoKey, smallBody, session)
	}
	for i, k := range s.servedBy(seq) {
		if k != other {
			t.Fatalf("turn %d after the move went to %s, want %s", i, k, other)
		}
	}
	s.ingest(31)
}

func TestFailoverMatrix(t *testing.T) {
	soon := time.Now().Add(90 * time.Second)
	cases := []struct {
		name      string
		behavior  fakellm.Behavior
		badURL    string // instead of a scripted failure: an address nothing listens on
		state     string
		reason    string
		untilNear time.Time // zero: any future time (escalating cooldown) or none (error)
		relative  time.Duration
	}{
		{name: "connect error", badURL: "http://127.0.0.1:9", state: "cooling", reason: "connection failed"},
		{name: "500", behavior: fakellm.Behavior{Status: 500}, state: "cooling", reason: "(500)"},
		{name: "503", behavior: fakellm.Behavior{Status: 503}, state: "cooling", reason: "(503)"},
		{name: "529 overloaded", behavior: fakellm.Behavior{Status: 529}, state: "cooling", reason: "overloaded"},
		{name: "429 retry-after", behavior: fakellm.Behavior{Status: 429, Headers: map[string]string{"retry-after": "90"}},
			state: "limited", reason: "rate limited", relative: 90 * time.Second},
		{name: "429 unified reset", behavior: fakellm.Behavior{Status: 429, Headers: map[string]string{
			"anthropic-ratelimit-unified-5h-reset": strconv.FormatInt(soon.Unix(), 10)}}, state: "limited", reason: "rate limited", untilNear: soon},
		{name: "401 api key", behavior: fakellm.Behavior{Status: 401}, state: "error", reason: "rejected the credential"},
		{name: "403 disabled", behavior: fakellm.Behavior{Status: 403, ErrorMessage: "This organization has been disabled."},
			state: "error", reason: "This organization has been disabled."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, func(su *setup) {
				su.noDemo = true
				su.accounts = []accountSpec{
					{name: "bad", apiKey: "sk-bad", priority: 1, baseURL: c.badURL},
					{name: "good", apiKey: "sk-good", priority: 2},
				}
			})
			s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
				if r.Header.Get("X-Api-Key") == "sk-bad" {
					return c.behavior
				}
				return fakellm.Behavior{}
			})
			seq := s.fake.LastSeq()
			sent := time.Now()
			resp, b := rawPost(t, s.proxyURL, s.seeded.DemoKey, smallBody, nil)
			if resp.StatusCode != 200 || !strings.Contains(string(b), "Hello from fakellm") {
				t.Fatalf("client got %d %s, want one clean answer", resp.StatusCode, b)
			}
			if c.relative > 0 {
				c.untilNear = sent.Add(c.relative)
			}
			if got := s.servedBy(seq); got[len(got)-1] != "sk-good" {
				t.Fatalf("served by %v", got)
			}
			reason, until := s.accountState("bad", c.state)
			if !strings.Contains(reason, c.reason) {
				t.Fatalf("reason %q, want it to mention %q", reason, c.reason)
			}
			switch {
			case c.state == "error":
				if until != nil {
					t.Fatalf("error state has an until time %v", until)
				}
			case !c.untilNear.IsZero():
				if until == nil || until.Sub(c.untilNear).Abs() > 3*time.Second {
					t.Fatalf("until %v, want about %v", until, c.untilNear)
				}
			default:
				if until == nil || !until.After(time.Now()) || until.After(time.Now().Add(6*time.Second)) {
					t.Fatalf("cooldown until %v, want the first escalation step (5 s)", until)
				}
			}
			// The next request goes straight to the good account.
			seq = s.fake.LastSeq()
			rawPost(t, s.proxyURL, s.seeded.DemoKey, smallBody, nil)
			if got := s.servedBy(seq); len(got) != 1 || got[0] != "sk-good" {
				t.Fatalf("next request served by %v, want only the good account", got)
			}
		})
	}
}

func TestEveryAccountFailingPassesTheLastErrorThrough(t *testing.T) {
	s := newStack(t, twoAccounts)
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{Status: 529} })
	seq := s.fake.LastSeq()
	status, body := s.post(t, s.seeded.DemoKey, smallBody)
	if status != 529 || body.Error.Type != "overloaded_error" {
		t.Fatalf("client got %d %+v, want the upstream's 529 unchanged", status, body)
	}
	if n := len(s.fake.ServedSince(seq)); n != 2 {
		t.Fatalf("%d attempts, want one per account (2)", n)
	}
	// Both accounts are cooling now: Tollgate says so itself.
	status, body = s.post(t, s.seeded.DemoKey, smallBody)
	if status != 503 || body.Error.Type != "tollgate_no_upstream" {
		t.Fatalf("with every account cooling: %d %+v", status, body)
	}
}

func TestErrorAfterFirstByteReachesTheClientUnchanged(t *testing.T) {
	s := newStack(t, twoAccounts)
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{MidStreamError: true} })
	body := `{"model":"` + model + `","max_tokens":32,"stream":true,"messages":[{"role":"user","content":"hello there friend"}]}`
	seq := s.fake.LastSeq()
	resp, viaProxy := rawPost(t, s.proxyURL, s.seeded.DemoKey, body, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(viaProxy), "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"") {
		t.Fatalf("client got %d:\n%s", resp.StatusCode, viaProxy)
	}
	if n := len(s.fake.ServedSince(seq)); n != 1 {
		t.Fatalf("%d attempts after the first byte, want no retry", n)
	}
	_, direct := rawPost(t, s.fakeURL, "sk-direct", body, nil)
	if withoutIDs(viaProxy) != withoutIDs(direct) {
		t.Fatalf("the failed stream was altered:\n%s\n---\n%s", viaProxy, direct)
	}
	// What the stream reported before the error is billed.
	s.ingest(1)
	var class string
	var input int64
	s.pool.QueryRow(context.Background(), "SELECT error_class, input_tokens FROM usage_events").Scan(&class, &input)
	if class != "stream_error:overloaded_error" || input == 0 {
		t.Fatalf("usage event: class %q input %d", class, input)
	}
}
