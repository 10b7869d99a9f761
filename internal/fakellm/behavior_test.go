package fakellm

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestScriptedErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		behavior    Behavior
		wantStatus  int
		wantType    string
		wantMessage string
		wantHeaders map[string]string
	}{
		{name: "overloaded", behavior: Behavior{Status: 529}, wantStatus: 529, wantType: "overloaded_error", wantMessage: "Overloaded"},
		{
			name: "rate limited with reset headers",
			behavior: Behavior{Status: 429, Headers: map[string]string{
				"retry-after":                       "7",
				"anthropic-ratelimit-unified-reset": "1767225600",
			}},
			wantStatus: 429, wantType: "rate_limit_error",
			wantHeaders: map[string]string{"Retry-After": "7", "Anthropic-Ratelimit-Unified-Reset": "1767225600"},
		},
		{name: "server error", behavior: Behavior{Status: 500}, wantStatus: 500, wantType: "api_error"},
		{name: "billing", behavior: Behavior{Status: 402}, wantStatus: 402, wantType: "billing_error"},
		{
			name:       "custom type and message",
			behavior:   Behavior{Status: 403, ErrorType: "permission_error", ErrorMessage: "This organization has been disabled."},
			wantStatus: 403, wantType: "permission_error", wantMessage: "This organization has been disabled.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t, Options{})
			tb.fake.SetScript(func(*Request) Behavior { return tt.behavior })
			for _, stream := range []bool{false, true} {
				out, resp := tb.postJSON(t, "/v1/messages", body(stream, "hi"), tt.wantStatus)
				e := out["error"].(map[string]any)
				if out["type"] != "error" || e["type"] != tt.wantType || out["request_id"] != resp.Header.Get("Request-Id") {
					t.Errorf("body = %v", out)
				}
				if tt.wantMessage != "" && e["message"] != tt.wantMessage {
					t.Errorf("message = %v", e["message"])
				}
				for k, v := range tt.wantHeaders {
					if got := resp.Header.Get(k); got != v {
						t.Errorf("header %s = %q, want %q", k, got, v)
					}
				}
			}
			for _, got := range tb.fake.Served() {
				if got.Status != tt.wantStatus || !got.Complete || got.Usage != (Usage{}) || got.MessageID != "" {
					t.Errorf("served = %+v", got)
				}
			}
		})
	}
}

// cutCase streams with the connection cut after n events and returns what the client
// read and what the fake logged.
func cutCase(t *testing.T, n int) ([]sseEvent, error, Served) {
	t.Helper()
	tb := setup(t, Options{})
	tb.fake.SetScript(func(*Request) Behavior { return Behavior{CutAfterEvents: n} })
	events, _, err := tb.stream(t, body(true, "say hi"))
	return events, err, lastServed(t, tb.fake)
}

func TestCutAfterEvents(t *testing.T) {
	t.Parallel()
	// The default answer to "say hi" has 13 events: message_start, block start, ping,
	// 7 deltas, block stop, message_delta, message_stop.
	tb := setup(t, Options{})
	full, _, err := tb.stream(t, body(true, "say hi"))
	if err != nil || len(full) != 13 {
		t.Fatalf("uncut stream: %d events, %v", len(full), err)
	}
	start := usageOf(t, full[0].data["message"].(map[string]any)["usage"])
	final := lastServed(t, tb.fake).Usage

	tests := []struct {
		cut       int
		wantUsage Usage
	}{
		{1, start},
		{5, start},
		{11, start}, // message_delta not sent
		{12, final}, // only message_stop missing
	}
	for _, tt := range tests {
		events, err, got := cutCase(t, tt.cut)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut %d: client read ended with %v, want unexpected EOF", tt.cut, err)
		}
		if len(events) != tt.cut {
			t.Errorf("cut %d: client read %d events", tt.cut, len(events))
		}
		if got.Complete || got.EventsWritten != tt.cut || got.Usage != tt.wantUsage || got.Status != 200 {
			t.Errorf("cut %d: served = %+v, want usage %+v", tt.cut, got, tt.wantUsage)
		}
	}

	// Asking to cut after the last event (or later) is a normal, complete stream.
	events, err, got := cutCase(t, 13)
	if err != nil || len(events) != 13 || !got.Complete || got.Usage != final {
		t.Errorf("cut 13: %d events, %v, served %+v", len(events), err, got)
	}
}

func TestCutBeforeAnyEvent(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	events, _, err := tb.stream(t, body(true, "FAKE_CUT_0 please"))
	if len(events) != 0 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read %d events, %v", len(events), err)
	}
	if got := lastServed(t, tb.fake); got.Complete || got.EventsWritten != 0 || got.Usage != (Usage{}) || got.Status != 200 {
		t.Errorf("served = %+v", got)
	}
}

func TestMidStreamError(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tb.fake.SetScript(func(*Request) Behavior { return Behavior{MidStreamError: true} })

	events, _, err := tb.stream(t, body(true, "hi"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"message_start", "content_block_start", "ping", "content_block_delta", "error"}
	if got := eventNames(events); !slices.Equal(got, want) {
		t.Fatalf("events = %v", got)
	}
	if last := events[4].raw; last != `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}` {
		t.Errorf("error event = %s", last)
	}
	got := lastServed(t, tb.fake)
	if got.Complete || got.EventsWritten != 5 || got.Usage.OutputTokens != 1 {
		t.Errorf("served = %+v", got)
	}

	// The non-streaming retry real clients make succeeds.
	msg, _ := tb.postJSON(t, "/v1/messages", body(false, "hi"), 200)
	if msg["stop_reason"] != "end_turn" {
		t.Errorf("non-streaming = %v", msg)
	}

	// The error event can be another one.
	tb.fake.SetScript(func(*Request) Behavior {
		return Behavior{MidStreamError: true, ErrorType: "api_error", ErrorMessage: "Internal server error"}
	})
	events, _, _ = tb.stream(t, body(true, "hi"))
	if last := events[len(events)-1].raw; last != `{"type":"error","error":{"type":"api_error","message":"Internal server error"}}` {
		t.Errorf("error event = %s", last)
	}
}

const bashTool = `{"name":"Bash","description":"Run a command","input_schema":{"type":"object",
	"properties":{"command":{"type":"string"},"timeout":{"type":"number"},"background":{"type":["boolean","null"]}},
	"required":["command","timeout","background"]}}`

func toolBody(stream bool, text string) string {
	return `{"model":"claude-sonnet-4-5","max_tokens":100,"stream":` + map[bool]string{true: "true", false: "false"}[stream] +
		`,"tools":[` + bashTool + `,{"name":"Read","input_schema":{"type":"object"}}],` +
		`"messages":[{"role":"user","content":` + strings.TrimSpace(mustJSON(text)) + `}]}`
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestToolUse(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tb.fake.SetScript(func(*Request) Behavior { return Behavior{ToolUse: true} })
	const wantInput = `{"command":"echo fake-tool-ran","timeout":1,"background":true}`

	events, _, err := tb.stream(t, toolBody(true, "list files"))
	if err != nil {
		t.Fatal(err)
	}
	var toolStart map[string]any
	for _, e := range events {
		if e.name == "content_block_start" && e.data["index"] == 1.0 {
			toolStart = e.data["content_block"].(map[string]any)
		}
	}
	if toolStart["type"] != "tool_use" || toolStart["name"] != "Bash" || !strings.HasPrefix(toolStart["id"].(string), "toolu_fake_") {
		t.Errorf("tool block start = %v", toolStart)
	}
	input, fragments := deltasOf(events, "input_json_delta", "partial_json")
	if input != wantInput || fragments < 3 || !json.Valid([]byte(input)) {
		t.Errorf("partial_json concatenates to %s in %d fragments", input, fragments)
	}
	md := events[len(events)-2].data
	if md["delta"].(map[string]any)["stop_reason"] != "tool_use" {
		t.Errorf("message_delta = %v", md)
	}
	_, textDeltas := deltasOf(events, "text_delta", "text")
	if got := usageOf(t, md["usage"]).OutputTokens; got != int64(textDeltas+fragments) {
		t.Errorf("output_tokens = %d, want %d", got, textDeltas+fragments)
	}

	msg, _ := tb.postJSON(t, "/v1/messages", toolBody(false, "list files"), 200)
	content := msg["content"].([]any)
	tool := content[1].(map[string]any)
	if msg["stop_reason"] != "tool_use" || tool["type"] != "tool_use" || mustJSON(tool["input"]) != `{"background":true,"command":"echo fake-tool-ran","timeout":1}` {
		t.Errorf("non-streaming = %v", msg)
	}
}

func TestThinking(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tb.fake.SetScript(func(*Request) Behavior { return Behavior{Thinking: true} })

	events, _, err := tb.stream(t, body(true, "hi"))
	if err != nil {
		t.Fatal(err)
	}
	first := events[1].data["content_block"].(map[string]any)
	if first["type"] != "thinking" || events[2].name != "ping" {
		t.Errorf("first block = %v, then %s", first, events[2].name)
	}
	thinking, n := deltasOf(events, "thinking_delta", "thinking")
	sig, sigs := deltasOf(events, "signature_delta", "signature")
	if thinking != thinkingText || sigs != 1 || sig == "" {
		t.Errorf("thinking %q (%d deltas), signature %q (%d)", thinking, n, sig, sigs)
	}
	var textIndex any
	for _, e := range events {
		if e.name == "content_block_start" && e.data["content_block"].(map[string]any)["type"] == "text" {
			textIndex = e.data["index"]
		}
	}
	if textIndex != 1.0 {
		t.Errorf("text block index = %v", textIndex)
	}

	msg, _ := tb.postJSON(t, "/v1/messages", body(false, "hi"), 200)
	block := msg["content"].([]any)[0].(map[string]any)
	if block["type"] != "thinking" || block["thinking"] != thinkingText || block["signature"] != sig {
		t.Errorf("non-streaming thinking block = %v", block)
	}
}

func TestUsageAndTextOverrides(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tb.fake.SetScript(func(r *Request) Behavior {
		return Behavior{Text: "one two three", OutputTokens: 5, InputTokens: 1000, CacheCreation1h: 30, CacheRead: 700}
	})
	events, _, err := tb.stream(t, body(true, "hi"))
	if err != nil {
		t.Fatal(err)
	}
	text, n := deltasOf(events, "text_delta", "text")
	if text != "one two three blah blah" || n != 5 {
		t.Errorf("text = %q in %d deltas", text, n)
	}
	want := Usage{InputTokens: 1000, OutputTokens: 5, CacheCreation1h: 30, CacheRead: 700}
	if got := lastServed(t, tb.fake).Usage; got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}

	tb.fake.SetScript(func(r *Request) Behavior { return Behavior{OutputTokens: 2} })
	msg, _ := tb.postJSON(t, "/v1/messages", body(false, "hi"), 200)
	if text := msg["content"].([]any)[0].(map[string]any)["text"]; text != "Hello from " {
		t.Errorf("truncated text = %q", text)
	}

	tb.fake.SetScript(nil)
	msg, _ = tb.postJSON(t, "/v1/messages", body(false, "hi"), 200)
	if usageOf(t, msg["usage"]).OutputTokens != 6 {
		t.Errorf("after reset: %v", msg)
	}
}

func TestDelays(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tb.fake.SetScript(func(*Request) Behavior {
		return Behavior{Delay: 60 * time.Millisecond, EventDelay: 5 * time.Millisecond}
	})
	began := time.Now()
	resp := tb.post(t, t.Context(), "/v1/messages", body(true, "hi"))
	defer resp.Body.Close()
	if waited := time.Since(began); waited < 60*time.Millisecond {
		t.Errorf("headers after %v, want >= 60ms", waited)
	}
	events, err := readEvents(t, resp.Body)
	if err != nil || len(events) != 12 {
		t.Fatalf("%d events, %v", len(events), err)
	}
	if took := time.Since(began); took < 60*time.Millisecond+11*5*time.Millisecond {
		t.Errorf("stream took %v, want >= 115ms", took)
	}
}

func TestScriptSeesRequest(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	seen := make(chan *Request, 1)
	tb.fake.SetScript(func(r *Request) Behavior { seen <- r; return Behavior{} })
	const req = `{"model":"claude-opus-4-1","stream":true,"messages":[
		{"role":"user","content":"first"},
		{"role":"assistant","content":"ok"},
		{"role":"user","content":[{"type":"text","text":"<system-reminder>x</system-reminder>"},{"type":"text","text":"second"}]},
		{"role":"system","content":"mid-conversation system"}]}`
	if _, _, err := tb.stream(t, req); err != nil {
		t.Fatal(err)
	}
	r := <-seen
	if r.Method != "POST" || r.Path != "/v1/messages" || r.Model != "claude-opus-4-1" || !r.Stream ||
		r.LastUserText != "second" || string(r.Body) != req || r.Header.Get("X-Api-Key") != "sk-test" {
		t.Errorf("request = %+v", r)
	}
}

func TestMarkers(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})

	out, resp := tb.postJSON(t, "/v1/messages", body(true, "please FAKE_ERROR_429 now"), 429)
	if out["error"].(map[string]any)["type"] != "rate_limit_error" || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("FAKE_ERROR_429: %v %v", out, resp.Header)
	}
	tb.postJSON(t, "/v1/messages", body(false, "FAKE_ERROR_529"), 529)

	events, _, _ := tb.stream(t, body(true, "FAKE_MIDSTREAM_ERROR"))
	if events[len(events)-1].name != "error" {
		t.Errorf("FAKE_MIDSTREAM_ERROR: %v", eventNames(events))
	}

	events, _, _ = tb.stream(t, body(true, "FAKE_THINKING"))
	if events[1].data["content_block"].(map[string]any)["type"] != "thinking" {
		t.Errorf("FAKE_THINKING: %v", events[1].raw)
	}

	events, _, _ = tb.stream(t, toolBody(true, "run FAKE_TOOL_CALL"))
	if stop := events[len(events)-2].data["delta"].(map[string]any)["stop_reason"]; stop != "tool_use" {
		t.Errorf("FAKE_TOOL_CALL: stop_reason %v", stop)
	}

	events, _, err := tb.stream(t, body(true, "FAKE_CUT_3"))
	if len(events) != 3 || err == nil {
		t.Errorf("FAKE_CUT_3: %d events, %v", len(events), err)
	}

	began := time.Now()
	if _, _, err := tb.stream(t, body(true, "FAKE_SLOW_10")); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took < 100*time.Millisecond {
		t.Errorf("FAKE_SLOW_10 stream took %v", took)
	}

	// A script's choice wins over a marker.
	tb.fake.SetScript(func(*Request) Behavior { return Behavior{Status: 500} })
	tb.postJSON(t, "/v1/messages", body(false, "FAKE_ERROR_429"), 500)
}

// After a tool round trip the last user message holds only a tool_result: the marker in
// the earlier prompt no longer applies, so agent CLIs get a final text answer.
func TestToolMarkerEndsAfterToolResult(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	req := `{"model":"claude-sonnet-4-5","stream":false,"tools":[` + bashTool + `],"messages":[
		{"role":"user","content":"FAKE_TOOL_CALL"},
		{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"ls"}}]},
		{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"FAKE_TOOL_CALL fake-tool-ran"}]}]}`
	msg, _ := tb.postJSON(t, "/v1/messages", req, 200)
	if msg["stop_reason"] != "end_turn" || msg["content"].([]any)[0].(map[string]any)["text"] != "Hello from fakellm." {
		t.Errorf("answer = %v", msg)
	}
}

func TestServedHTTP(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	for range 3 {
		tb.postJSON(t, "/v1/messages", body(false, "hi"), 200)
	}

	get := func(path string) []Served {
		t.Helper()
		resp, err := http.Get(tb.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out []Served
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, err)
		}
		return out
	}
	all := get("/_fakellm/served")
	if len(all) != 3 || all[2].Seq != 3 || all[0].Usage.OutputTokens != 6 || all[0].Header.Get("X-Api-Key") != "sk-test" {
		t.Errorf("served = %+v", all)
	}
	if since := get("/_fakellm/served?since=2"); len(since) != 1 || since[0].Seq != 3 {
		t.Errorf("since=2: %+v", since)
	}

	resp, err := http.Post(tb.url+"/_fakellm/reset", "", nil)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("reset: %v %v", resp, err)
	}
	resp.Body.Close()
	if after := get("/_fakellm/served"); len(after) != 0 {
		t.Errorf("after reset: %+v", after)
	}
	tb.postJSON(t, "/v1/messages", body(false, "hi"), 200)
	if after := get("/_fakellm/served?since=3"); len(after) != 1 || after[0].Seq != 4 {
		t.Errorf("seq after reset: %+v", after)
	}

	resp, err = http.Get(tb.url + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestServedLogCap(t *testing.T) {
	t.Parallel()
	s := New(Options{MaxLog: 3})
	for range 10 {
		s.record(&Served{})
	}
	got := s.Served()
	if len(got) != 3 || got[0].Seq != 8 || got[2].Seq != 10 || s.LastSeq() != 10 {
		t.Errorf("served = %+v", got)
	}
	if since := s.ServedSince(9); len(since) != 1 || since[0].Seq != 10 {
		t.Errorf("since 9 = %+v", since)
	}
}
