package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"

	"github.com/tollgate/tollgate/internal/fakellm"
	"github.com/tollgate/tollgate/internal/limit"
)

// rawStream posts body to base+/v1/messages with key and returns the raw response.
func rawPost(t *testing.T, base, key string, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/messages", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Anthropic-Version", "2023-06-01")
	req.Header.Set("X-Api-Key", key)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

var fakeID = regexp.MustCompile(`_fake_[0-9]+`)

// withoutIDs blanks what differs between two identical answers (message and tool ids).
func withoutIDs(stream []byte) string {
	return fakeID.ReplaceAllString(string(stream), "_fake_N")
}

func TestSDKToolUseThinkingCountTokensModels(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	client := s.sdk(s.seeded.DemoKey)

	t.Run("tool use passes through byte for byte", func(t *testing.T) {
		s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{ToolUse: true, Thinking: true} })
		defer s.fake.SetScript(nil)
		body := `{"model":"` + model + `","max_tokens":512,"stream":true,"thinking":{"type":"enabled","budget_tokens":1024},
			"tools":[{"name":"get_weather","description":"w","input_schema":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city","days"]}}],
			"messages":[{"role":"user","content":"weather?"}]}`
		resp, viaProxy := rawPost(t, s.proxyURL, s.seeded.DemoKey, body, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, viaProxy)
		}
		_, direct := rawPost(t, s.fakeURL, "sk-direct", body, nil)
		if a, b := withoutIDs(viaProxy), withoutIDs(direct); a != b {
			al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
			for i := range min(len(al), len(bl)) {
				if al[i] != bl[i] {
					t.Fatalf("the stream through Tollgate differs from the upstream's at line %d:\nproxy:  %s\ndirect: %s", i, al[i], bl[i])
				}
			}
			t.Fatalf("the stream through Tollgate has %d lines, the upstream's %d", len(al), len(bl))
		}
		for _, want := range []string{"input_json_delta", "thinking_delta", "signature_delta"} {
			if !bytes.Contains(viaProxy, []byte(want)) {
				t.Fatalf("stream has no %s", want)
			}
		}

		// The SDK reassembles the tool input from the fragments.
		stream := client.Messages.NewStreaming(ctx, anthropic.MessageNewParams{
			Model: model, MaxTokens: 512,
			Tools: []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{Name: "get_weather",
				InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}, Required: []string{"city"}}}}},
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("weather?"))},
		})
		var msg anthropic.Message
		for stream.Next() {
			if err := msg.Accumulate(stream.Current()); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		var sawTool, sawThinking bool
		for _, b := range msg.Content {
			switch v := b.AsAny().(type) {
			case anthropic.ToolUseBlock:
				var in map[string]any
				if err := json.Unmarshal(v.Input, &in); err != nil || in["city"] == nil {
					t.Fatalf("tool input %s: %v", v.Input, err)
				}
				sawTool = true
			case anthropic.ThinkingBlock:
				sawThinking = v.Thinking != "" && v.Signature != ""
			}
		}
		if !sawTool || !sawThinking || msg.StopReason != anthropic.StopReasonToolUse {
			t.Fatalf("message %+v: tool %v thinking %v", msg, sawTool, sawThinking)
		}
		s.ingest(2)
	})

	t.Run("count tokens is routed and not billed", func(t *testing.T) {
		var before int
		s.pool.QueryRow(ctx, "SELECT count(*) FROM usage_events").Scan(&before)
		n, err := client.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{
			Model:    model,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("count these words please"))},
		})
		if err != nil {
			t.Fatal(err)
		}
		served := s.fake.Served()
		last := served[len(served)-1]
		if last.Path != "/v1/messages/count_tokens" || n.InputTokens != last.Usage.InputTokens || n.InputTokens == 0 {
			t.Fatalf("count_tokens = %d; fakellm served %+v", n.InputTokens, last)
		}
		s.consumer.ProcessOnce(ctx)
		var after int
		s.pool.QueryRow(ctx, "SELECT count(*) FROM usage_events").Scan(&after)
		if after != before {
			t.Fatalf("count_tokens created %d usage events", after-before)
		}
	})

	t.Run("models lists what the key may use", func(t *testing.T) {
		page, err := client.Models.List(ctx, anthropic.ModelListParams{})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, m := range page.Data {
			ids[m.ID] = true
		}
		if !ids[model] || !ids["claude-opus-4-1"] || ids["gpt-5"] {
			t.Fatalf("models: %v", ids)
		}
		if _, err := s.pool.Exec(ctx, "UPDATE api_keys SET models = '{claude-haiku-4-5}'"); err != nil {
			t.Fatal(err)
		}
		s.publish("user:" + itoa(s.seeded.DemoUserID))
		deadline := time.Now().Add(5 * time.Second)
		for {
			page, err = client.Models.List(ctx, anthropic.ModelListParams{})
			if err == nil && len(page.Data) == 1 && page.Data[0].ID == "claude-haiku-4-5" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after narrowing the key: %+v, %v", page, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		status, body := s.post(t, s.seeded.DemoKey, `{"model":"`+model+`","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`)
		if status != 403 || body.Error.Type != "tollgate_permission_error" {
			t.Fatalf("a model outside the key's list: %d %+v", status, body)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// inflight wraps fakellm and records the most requests it ever had in progress.
type inflight struct {
	now, peak atomic.Int64
}

func (f *inflight) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := f.now.Add(1)
		for {
			p := f.peak.Load()
			if n <= p || f.peak.CompareAndSwap(p, n) {
				break
			}
		}
		defer f.now.Add(-1)
		h.ServeHTTP(w, r)
	})
}

func TestConcurrencyLimitNeverExceeded(t *testing.T) {
	var fl inflight
	s := newStack(t, func(su *setup) { su.upstream = fl.wrap })
	const limitN = 3
	if _, err := s.pool.Exec(context.Background(), "UPDATE api_keys SET concurrency = $1", limitN); err != nil {
		t.Fatal(err)
	}
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{EventDelay: 15 * time.Millisecond} })
	body := `{"model":"` + model + `","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"one two three four five"}]}`
	var wg sync.WaitGroup
	codes := make([]int, limitN+5)
	for i := range codes {
		wg.Go(func() {
			resp, _ := rawPost(t, s.proxyURL, s.seeded.DemoKey, body, nil)
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Fatalf("request %d: status %d (waiting requests must be admitted when slots free up)", i, c)
		}
	}
	if p := fl.peak.Load(); p > limitN || p < 2 {
		t.Fatalf("peak in flight at the upstream = %d, want 2..%d", p, limitN)
	}
	s.ingest(limitN + 5)
}

// streamPause wraps fakellm so that a stream stops after message_start until resume: its
// request holds its slot for as long as the test needs, however slow the machine. Events
// must be spaced (an EventDelay), so that each is written and flushed on its own.
type streamPause struct {
	started, resumed   chan struct{}
	startOnce, resOnce sync.Once
}

func newStreamPause() *streamPause {
	return &streamPause{started: make(chan struct{}), resumed: make(chan struct{})}
}

func (p *streamPause) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(pausingWriter{w, p}, r)
	})
}

// waitStarted waits until a stream is paused, its request admitted.
func (p *streamPause) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-p.started:
	case <-time.After(10 * time.Second):
		t.Fatal("no stream reached fakellm")
	}
}

// resume lets paused streams go on; later calls do nothing.
func (p *streamPause) resume() { p.resOnce.Do(func() { close(p.resumed) }) }

type pausingWriter struct {
	http.ResponseWriter
	p *streamPause
}

func (w pausingWriter) Write(b []byte) (int, error) {
	if bytes.HasPrefix(b, []byte("event: content_block_start")) {
		w.p.startOnce.Do(func() { close(w.p.started) })
		<-w.p.resumed
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets fakellm's http.ResponseController flush through the wrapper.
func (w pausingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func TestConcurrencyWaitIsBounded(t *testing.T) {
	pause := newStreamPause()
	s := newStack(t, func(su *setup) {
		su.limits = limit.Options{MaxWait: 300 * time.Millisecond}
		su.upstream = pause.wrap
	})
	defer pause.resume()
	if _, err := s.pool.Exec(context.Background(), "UPDATE api_keys SET concurrency = 1"); err != nil {
		t.Fatal(err)
	}
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{EventDelay: 10 * time.Millisecond} })
	first := `{"model":"` + model + `","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	body := `{"model":"` + model + `","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`
	done := make(chan int, 1)
	go func() {
		resp, _ := rawPost(t, s.proxyURL, s.seeded.DemoKey, first, nil)
		done <- resp.StatusCode
	}()
	pause.waitStarted(t) // the first request holds the key's only slot until resume
	start := time.Now()
	status, e := s.post(t, s.seeded.DemoKey, body)
	if status != 429 || e.Error.Type != "tollgate_concurrency_limit" || !strings.Contains(e.Error.Message, "concurrency limit of 1") {
		t.Fatalf("second request: %d %+v", status, e)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond || waited > 3*time.Second {
		t.Fatalf("waited %s, want about the 300 ms bound", waited)
	}
	pause.resume()
	if c := <-done; c != 200 {
		t.Fatalf("first request: %d", c)
	}
}

// sseText returns the concatenated text deltas of an Anthropic stream.
func sseText(b []byte) string {
	var out strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		var ev struct {
			Delta struct {
				Text string `json:"text"`
			} `json:"delta"`
		}
		json.Unmarshal([]byte(line[6:]), &ev)
		out.WriteString(ev.Delta.Text)
	}
	return out.String()
}

// TestLongStreamKeepsItsLease: a stream longer than the lease TTL keeps its slot (the
// proxy renews it), so the key's limit is not exceeded by a second request meanwhile.
func TestLongStreamKeepsItsLease(t *testing.T) {
	// Renewed every third of the TTL: the lease survives a renewal up to 2 s late, as
	// can happen on a loaded machine.
	const ttl = 3 * time.Second
	var fl inflight
	pause := newStreamPause()
	s := newStack(t, func(su *setup) {
		su.limits = limit.Options{LeaseTTL: ttl, MaxWait: 200 * time.Millisecond}
		su.upstream = func(h http.Handler) http.Handler { return fl.wrap(pause.wrap(h)) }
	})
	defer pause.resume()
	s.exec(t, "UPDATE api_keys SET concurrency = 1")
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior { return fakellm.Behavior{EventDelay: 10 * time.Millisecond} })
	done := make(chan int, 1)
	go func() {
		resp, _ := rawPost(t, s.proxyURL, s.seeded.DemoKey, `{"model":"`+model+`","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"a long answer please"}]}`, nil)
		done <- resp.StatusCode
	}()
	pause.waitStarted(t)
	// The stream's lease was taken before it reached fakellm: as first written it has
	// expired by now, and only its renewals hold the slot.
	time.Sleep(ttl + ttl/3)
	status, e := s.post(t, s.seeded.DemoKey, smallBody)
	if status != 429 || e.Error.Type != "tollgate_concurrency_limit" {
		t.Fatalf("second request during a long stream: %d %+v (the first one's lease expired?)", status, e)
	}
	pause.resume()
	if c := <-done; c != 200 {
		t.Fatalf("long stream: %d", c)
	}
	if p := fl.peak.Load(); p != 1 {
		t.Fatalf("peak in flight %d", p)
	}
}
