package fakellm

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestStreamEventSequence(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})

	events, resp, err := tb.stream(t, body(true, "say hi"))
	if err != nil {
		t.Fatalf("stream ended with %v", err)
	}
	want := []string{"message_start", "content_block_start", "ping"}
	for range 7 { // Hello from fakellm. You said: say hi
		want = append(want, "content_block_delta")
	}
	want = append(want, "content_block_stop", "message_delta", "message_stop")
	if got := eventNames(events); !slices.Equal(got, want) {
		t.Fatalf("events = %v\nwant     %v", got, want)
	}

	reqID := resp.Header.Get("Request-Id")
	if !strings.HasPrefix(reqID, "req_fake_") {
		t.Errorf("request-id = %q", reqID)
	}
	msg := events[0].data["message"].(map[string]any)
	if msg["id"] != "msg_fake_"+strings.TrimPrefix(reqID, "req_fake_") || msg["model"] != "claude-sonnet-4-5" ||
		msg["role"] != "assistant" || msg["type"] != "message" || msg["stop_reason"] != nil {
		t.Errorf("message_start message = %v", msg)
	}
	start := usageOf(t, msg["usage"])
	if usage := msg["usage"].(map[string]any); usage["service_tier"] != "standard" || usage["output_tokens"] != 1.0 {
		t.Errorf("message_start usage = %v", usage)
	}
	if text, _ := deltasOf(events, "text_delta", "text"); text != "Hello from fakellm. You said: say hi" {
		t.Errorf("text = %q", text)
	}

	md := events[len(events)-2].data
	if md["delta"].(map[string]any)["stop_reason"] != "end_turn" {
		t.Errorf("message_delta = %v", md)
	}
	final := usageOf(t, md["usage"])
	if final.InputTokens != start.InputTokens || final.OutputTokens != 7 {
		t.Errorf("message_delta usage = %+v, start %+v", final, start)
	}

	got := lastServed(t, tb.fake)
	if !got.Complete || got.Status != 200 || !got.Stream || got.EventsWritten != len(events) ||
		got.Usage != final || got.RequestID != reqID || got.MessageID != msg["id"] ||
		got.Model != "claude-sonnet-4-5" || got.Path != "/v1/messages" || got.Method != "POST" {
		t.Errorf("served = %+v", got)
	}
	if got.Header.Get("Anthropic-Version") != "2023-06-01" {
		t.Errorf("served header = %v", got.Header)
	}
}

func TestNonStreamingMessage(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})

	msg, resp := tb.postJSON(t, "/v1/messages?beta=true", body(false, "say hi"), 200)
	if msg["type"] != "message" || msg["role"] != "assistant" || msg["model"] != "claude-sonnet-4-5" ||
		msg["stop_reason"] != "end_turn" || msg["stop_sequence"] != nil {
		t.Errorf("message = %v", msg)
	}
	content := msg["content"].([]any)
	if len(content) != 1 || content[0].(map[string]any)["text"] != "Hello from fakellm. You said: say hi" {
		t.Errorf("content = %v", content)
	}
	u := usageOf(t, msg["usage"])
	if u.OutputTokens != 7 || u.InputTokens < 1 {
		t.Errorf("usage = %+v", u)
	}
	got := lastServed(t, tb.fake)
	if !got.Complete || got.Stream || got.Usage != u || got.RequestID != resp.Header.Get("Request-Id") {
		t.Errorf("served = %+v", got)
	}
}

// The streamed cumulative usage and the non-streamed usage of the same request agree,
// which is what lets Tollgate bill both the same way.
func TestStreamAndNonStreamUsageAgree(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	const userText = "a longer question, so that the counts are not all ones: what is the meaning of it all?"

	events, _, err := tb.stream(t, body(true, userText))
	if err != nil {
		t.Fatal(err)
	}
	streamed := usageOf(t, events[len(events)-2].data["usage"])
	msg, _ := tb.postJSON(t, "/v1/messages", body(false, userText), 200)
	if plain := usageOf(t, msg["usage"]); plain != streamed {
		t.Errorf("non-streaming usage %+v != streamed %+v", plain, streamed)
	}
	if _, n := deltasOf(events, "text_delta", "text"); int64(n) != streamed.OutputTokens {
		t.Errorf("output_tokens %d != %d deltas", streamed.OutputTokens, n)
	}
	if want := int64((len(userText) + 3) / 4); streamed.InputTokens != want {
		t.Errorf("input_tokens = %d, want %d", streamed.InputTokens, want)
	}
}

func TestCacheSplit(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	system := strings.Repeat("s", 400)  // 100 tokens
	cached := strings.Repeat("c", 200)  // 50 tokens
	question := strings.Repeat("q", 80) // 20 tokens
	tests := []struct {
		name    string
		control string
		want    Usage
	}{
		{"5m", `{"type":"ephemeral"}`, Usage{InputTokens: 20, CacheCreation5m: 150, OutputTokens: 6}},
		{"1h", `{"type":"ephemeral","ttl":"1h"}`, Usage{InputTokens: 20, CacheCreation1h: 150, OutputTokens: 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := `{"model":"claude-opus-4-1","max_tokens":10,"stream":true,
				"system":[{"type":"text","text":"` + system + `"}],
				"messages":[{"role":"user","content":[
					{"type":"text","text":"` + cached + `","cache_control":` + tt.control + `},
					{"type":"text","text":"` + question + `"}]}]}`
			events, _, err := tb.stream(t, req)
			if err != nil {
				t.Fatal(err)
			}
			start := usageOf(t, events[0].data["message"].(map[string]any)["usage"])
			wantStart := tt.want
			wantStart.OutputTokens = 1
			if start != wantStart {
				t.Errorf("message_start usage = %+v, want %+v", start, wantStart)
			}
			md := events[len(events)-2].data["usage"].(map[string]any)
			if md["input_tokens"] != 20.0 || md["cache_creation_input_tokens"] != 150.0 || md["output_tokens"] != 6.0 {
				t.Errorf("message_delta usage = %v", md)
			}
			msg, _ := tb.postJSON(t, "/v1/messages", strings.Replace(req, `"stream":true`, `"stream":false`, 1), 200)
			if got := usageOf(t, msg["usage"]); got != tt.want {
				t.Errorf("non-streaming usage = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCountTokens(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	req := `{"model":"claude-haiku-4-5","system":"abcd","messages":[
		{"role":"user","content":"12345678"},
		{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}]},
		{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"abcdefgh"}]}]}]}`
	out, resp := tb.postJSON(t, "/v1/messages/count_tokens?beta=true", req, 200)
	if out["input_tokens"] != 5.0 || len(out) != 1 { // (4+8+8)/4
		t.Errorf("count_tokens = %v", out)
	}
	if resp.Header.Get("Request-Id") == "" {
		t.Error("no request-id")
	}
	got := lastServed(t, tb.fake)
	if got.Path != "/v1/messages/count_tokens" || got.Usage != (Usage{InputTokens: 5}) || !got.Complete || got.MessageID != "" {
		t.Errorf("served = %+v", got)
	}
}

func TestModels(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	get := func(path string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, tb.url+path, nil)
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp, string(raw)
	}

	resp, list := get("/v1/models?limit=20")
	if resp.StatusCode != 200 || resp.Header.Get("Request-Id") == "" ||
		!strings.HasPrefix(list, `{"data":[{"type":"model","id":"claude-haiku-4-5","display_name":"Claude Haiku 4.5","created_at":"2025-10-15T00:00:00Z"}`) ||
		!strings.HasSuffix(list, `],"has_more":false,"first_id":"claude-haiku-4-5","last_id":"claude-3-7-sonnet-20250219"}`) {
		t.Errorf("list: %d %s", resp.StatusCode, list)
	}
	resp, one := get("/v1/models/claude-opus-4-1")
	if resp.StatusCode != 200 || one != `{"type":"model","id":"claude-opus-4-1","display_name":"Claude Opus 4.1","created_at":"2025-08-05T00:00:00Z"}` {
		t.Errorf("one: %d %s", resp.StatusCode, one)
	}
	resp, missing := get("/v1/models/gpt-4")
	if resp.StatusCode != 404 || !strings.Contains(missing, `"type":"not_found_error"`) {
		t.Errorf("missing: %d %s", resp.StatusCode, missing)
	}
	if n := len(tb.fake.Served()); n != 0 {
		t.Errorf("models calls were logged: %d entries", n)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{APIKeys: []string{"sk-good"}})
	tests := []struct {
		name       string
		header     string
		value      string
		wantStatus int
	}{
		{"no key", "", "", 401},
		{"wrong x-api-key", "X-Api-Key", "sk-bad", 401},
		{"good x-api-key", "X-Api-Key", "sk-good", 200},
		{"good bearer", "Authorization", "Bearer sk-good", 200},
		{"wrong bearer", "Authorization", "Bearer sk-bad", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, tb.url+"/v1/messages", strings.NewReader(body(false, "hi")))
			if tt.header != "" {
				req.Header.Set(tt.header, tt.value)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.wantStatus, raw)
			}
			if tt.wantStatus == 401 {
				want := `{"type":"error","error":{"type":"authentication_error","message":`
				if !strings.HasPrefix(string(raw), want) || !strings.HasSuffix(string(raw), `"request_id":"`+resp.Header.Get("Request-Id")+`"}`) {
					t.Errorf("body = %s", raw)
				}
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tests := []struct {
		name, body, wantMessage string
	}{
		{"invalid JSON", `{"model":`, "There was an error parsing the body"},
		{"wrong type", `{"model":"m","messages":"hi"}`, "There was an error parsing the body"},
		{"missing model", `{"messages":[{"role":"user","content":"hi"}]}`, "model: Field required"},
		{"missing messages", `{"model":"claude-haiku-4-5"}`, "messages: Field required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, resp := tb.postJSON(t, "/v1/messages", tt.body, 400)
			e := out["error"].(map[string]any)
			if out["type"] != "error" || e["type"] != "invalid_request_error" ||
				!strings.HasPrefix(e["message"].(string), tt.wantMessage) || out["request_id"] != resp.Header.Get("Request-Id") {
				t.Errorf("body = %v", out)
			}
		})
	}
}

// A client that goes away mid-stream leaves an entry that is not complete and carries
// only the usage it was sent.
func TestClientDisconnect(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tb.fake.SetScript(func(*Request) Behavior { return Behavior{EventDelay: 20 * time.Millisecond} })

	ctx, cancel := context.WithCancel(context.Background())
	resp := tb.post(t, ctx, "/v1/messages", body(true, "tell me a long story"))
	defer resp.Body.Close()
	buf := make([]byte, 1)
	if _, err := io.ReadFull(resp.Body, buf); err != nil { // message_start is on its way
		t.Fatal(err)
	}
	cancel()

	got := waitServed(t, tb.fake, 0, 1)[0]
	if got.Complete || got.Status != 200 || got.EventsWritten < 1 || got.EventsWritten > 3 {
		t.Errorf("served = %+v", got)
	}
	if got.Usage.OutputTokens != 1 || got.Usage.InputTokens < 1 {
		t.Errorf("usage = %+v, want message_start's", got.Usage)
	}
}
