package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"

	"github.com/tollgate/tollgate/internal/fakellm"
)

// TestHungUpstream: an account whose upstream takes a streamed request and sends no
// response headers is given up after UPSTREAM_HEADER_TIMEOUT; the request fails over to
// the next account and succeeds, and the hung account leaves rotation. A stream whose
// upstream goes quiet is cut after UPSTREAM_IDLE_TIMEOUT, billed once for what fakellm
// had put on the wire, and its concurrency slot is free at once, not when StreamLimit
// ends the exchange.
func TestHungUpstream(t *testing.T) {
	const limit = 300 * time.Millisecond
	s := twoAccountStack(t, func(su *setup) { su.headerTimeout, su.idleTimeout = limit, limit })
	body := `{"model":"` + model + `","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"one two three four five six seven"}]}`
	stream := func() (status int, text, rid string, took time.Duration) {
		start := time.Now()
		resp, b := rawPost(t, s.proxyURL, s.seeded.DemoKey, body, nil)
		return resp.StatusCode, string(b), resp.Header.Get("X-Tollgate-Request-Id"), time.Since(start)
	}

	// acct-a hangs before its headers.
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
		if r.Header.Get("X-Api-Key") == "sk-a" {
			return fakellm.Behavior{Delay: time.Minute}
		}
		return fakellm.Behavior{}
	})
	seq := s.fake.LastSeq()
	status, text, _, took := stream()
	if status != 200 || !strings.Contains(text, "message_stop") {
		t.Fatalf("stream with the preferred account hung: %d after %s\n%s", status, took, text)
	}
	if by := s.servedBy(seq); len(by) != 2 || by[0] != "sk-a" || by[1] != "sk-b" {
		t.Fatalf("served by %v, want the hung sk-a then sk-b", by)
	}
	t.Logf("failed over from the hung account after %s", took.Round(time.Millisecond))
	s.accountState("acct-a", "cooling")
	seq = s.fake.LastSeq()
	if status, text, _, _ := stream(); status != 200 || !strings.Contains(text, "message_stop") {
		t.Fatalf("next stream: %d\n%s", status, text)
	}
	if by := s.servedBy(seq); len(by) != 1 || by[0] != "sk-b" {
		t.Fatalf("next stream served by %v, want only sk-b (sk-a out of rotation)", by)
	}

	// A stream that goes quiet after its first events.
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{EventDelay: 3 * time.Second} })
	s.ingest(2) // the two streams above, once each
	seq = s.fake.LastSeq()
	status, text, rid, took := stream()
	if status != 200 || !strings.Contains(text, "message_start") || strings.Contains(text, "message_stop") ||
		!strings.Contains(text, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"tollgate_upstream_stalled\"") || took > 2*time.Second {
		t.Fatalf("quiet stream: %d after %s\n%s", status, took, text)
	}
	// Its slot (the key's only one) is free: the next request is not refused.
	s.fake.SetScript(nil)
	if status, e := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
		t.Fatalf("after the cut stream: %d %+v", status, e)
	}
	served := s.waitServed(t, seq, 2)
	s.ingest(4)
	n, billed, classes := s.billedRows(t, []string{rid})
	if n != 1 || len(classes) != 1 || classes[0] != "upstream_stalled" || billed != s.expectedBilled(served[0].Usage) || billed == 0 {
		t.Fatalf("the cut stream: %d rows, %d nano, classes %v; fakellm put %+v on the wire", n, billed, classes, served[0].Usage)
	}

	// The SDK meets the end of such a stream as an error that names it, not as a whole
	// answer; so it does when the upstream breaks a stream off.
	sdkStream := func(want string) {
		t.Helper()
		client := s.sdk(s.seeded.DemoKey)
		stream := client.Messages.NewStreaming(t.Context(), anthropic.MessageNewParams{Model: model, MaxTokens: 64,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("one two three four five six seven"))}})
		events := 0
		for stream.Next() {
			events++
		}
		if err := stream.Err(); err == nil || !strings.Contains(err.Error(), want) || events == 0 {
			t.Fatalf("after %d events the SDK reported %v, want an error naming %s", events, err, want)
		}
	}
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{EventDelay: 3 * time.Second} })
	sdkStream("tollgate_upstream_stalled")
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{CutAfterEvents: 3} })
	sdkStream("tollgate_upstream_cut")

	// Every account hangs: a 504 in the protocol's shape, not a request that never ends.
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{Delay: time.Minute} })
	status, text, _, took = stream()
	if status != http.StatusGatewayTimeout || !strings.Contains(text, "tollgate_upstream_timeout") {
		t.Fatalf("every account hung: %d after %s\n%s", status, took, text)
	}
}

// TestHungUpstreamNonStreamed: a non-streamed request whose answer does not come within
// UPSTREAM_RESPONSE_TIMEOUT fails like a stream without headers: it fails over to the
// next account (which serves it), the hung account leaves rotation, and when no account
// answers the client gets a 504 in the protocol's shape instead of waiting for
// StreamLimit (30 min) with its concurrency slot held.
func TestHungUpstreamNonStreamed(t *testing.T) {
	const limit = 300 * time.Millisecond
	s := twoAccountStack(t, func(su *setup) { su.responseTimeout = limit })
	hang := func(keys ...string) {
		s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
			for _, k := range keys {
				if r.Header.Get("X-Api-Key") == k {
					return fakellm.Behavior{Delay: time.Minute}
				}
			}
			return fakellm.Behavior{}
		})
	}

	hang("sk-a")
	seq := s.fake.LastSeq()
	start := time.Now()
	if status, e := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
		t.Fatalf("with the preferred account hung: %d %+v", status, e)
	}
	took := time.Since(start)
	if by := s.servedBy(seq); len(by) != 2 || by[0] != "sk-a" || by[1] != "sk-b" {
		t.Fatalf("served by %v, want the hung sk-a then sk-b", by)
	}
	if took < limit || took > 5*time.Second {
		t.Fatalf("failed over after %s with the limit at %s", took, limit)
	}
	s.accountState("acct-a", "cooling")

	// No account answers (sk-a is out of rotation, sk-b hangs): a 504 once the limit has
	// passed.
	hang("sk-a", "sk-b")
	start = time.Now()
	status, e := s.post(t, s.seeded.DemoKey, smallBody)
	if took := time.Since(start); status != http.StatusGatewayTimeout || e.Error.Type != "tollgate_upstream_timeout" || took > 5*time.Second {
		t.Fatalf("every account hung: %d %+v after %s", status, e, took)
	}
	s.accountState("acct-b", "cooling")
}

// twoAccountStack is a stack whose pool holds acct-a (key sk-a, preferred) and acct-b
// (sk-b) instead of the demo account, with the demo key limited to one request at a time.
func twoAccountStack(t *testing.T, opt func(*setup)) *stack {
	s := newStack(t, func(su *setup) {
		su.noDemo = true
		su.accounts = []accountSpec{
			{name: "acct-a", apiKey: "sk-a", priority: 10, weight: 1}, // preferred
			{name: "acct-b", apiKey: "sk-b", priority: 20, weight: 1},
		}
		opt(su)
	})
	s.exec(t, "UPDATE api_keys SET concurrency = 1")
	return s
}
