package fakellm

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func chatBodyOf(stream, includeUsage bool, userText string) string {
	b := `{"model":"gpt-4o-mini","stream":` + mustJSON(stream)
	if includeUsage {
		b += `,"stream_options":{"include_usage":true}`
	}
	return b + `,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":` + mustJSON(userText) + `}]}`
}

// chatStream posts a streaming Chat Completions request and reads its data lines.
func (tb *testBundle) chatStream(t *testing.T, body string) ([]string, *http.Response, error) {
	t.Helper()
	resp := tb.send(t, http.MethodPost, "/v1/chat/completions", body, openAIAuth...)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("status = %d: %s", resp.StatusCode, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
		t.Errorf("content-type = %q", ct)
	}
	lines, err := readDataLines(t, resp.Body)
	return lines, resp, err
}

// chatText concatenates the content deltas of chunks.
func chatText(t *testing.T, lines []string) string {
	t.Helper()
	var sb strings.Builder
	for _, l := range lines {
		if l == "[DONE]" {
			continue
		}
		for _, c := range decode(t, l)["choices"].([]any) {
			if s, ok := c.(map[string]any)["delta"].(map[string]any)["content"].(string); ok {
				sb.WriteString(s)
			}
		}
	}
	return sb.String()
}

func TestChatStreamIncludeUsage(t *testing.T) {
	t.Parallel()
	const prompt = "Be brief.say hi"
	want := Usage{InputTokens: tokensOf(prompt), OutputTokens: 7}
	for _, include := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[include], func(t *testing.T) {
			t.Parallel()
			tb := setup(t, Options{})
			lines, resp, err := tb.chatStream(t, chatBodyOf(true, include, "say hi"))
			if err != nil {
				t.Fatal(err)
			}
			if lines[len(lines)-1] != "[DONE]" {
				t.Fatalf("last line = %s", lines[len(lines)-1])
			}
			chunks := lines[:len(lines)-1]
			// role, 7 words, finish, and the usage chunk when asked for.
			wantChunks := 9 + map[bool]int{true: 1, false: 0}[include]
			if len(chunks) != wantChunks {
				t.Fatalf("%d chunks, want %d: %v", len(chunks), wantChunks, chunks)
			}
			first := decode(t, chunks[0])
			delta := first["choices"].([]any)[0].(map[string]any)["delta"].(map[string]any)
			if first["object"] != "chat.completion.chunk" || first["model"] != "gpt-4o-mini" || delta["role"] != "assistant" ||
				!strings.HasPrefix(first["id"].(string), "chatcmpl-fake-") {
				t.Errorf("first chunk = %v", first)
			}
			if text := chatText(t, chunks); text != "Hello from fakellm. You said: say hi" {
				t.Errorf("text = %q", text)
			}
			for i, c := range chunks {
				u, has := decode(t, c)["usage"]
				isUsageChunk := include && i == len(chunks)-1
				switch {
				case isUsageChunk && u == nil:
					t.Errorf("usage chunk without usage: %s", c)
				case include && !isUsageChunk && (!has || u != nil):
					t.Errorf("chunk %d should carry \"usage\":null: %s", i, c)
				case !include && has:
					t.Errorf("chunk %d carries usage without include_usage: %s", i, c)
				}
			}
			finishChunk := decode(t, chunks[8])["choices"].([]any)[0].(map[string]any)
			if finishChunk["finish_reason"] != "stop" {
				t.Errorf("finish chunk = %v", finishChunk)
			}

			got := lastServed(t, tb.fake)
			if got.Provider != ProviderOpenAI || got.Endpoint != EndpointChat || !got.Stream || !got.Complete ||
				got.EventsWritten != len(lines) || got.Generated != want || got.Model != "gpt-4o-mini" ||
				got.RequestID != resp.Header.Get("X-Request-Id") || got.MessageID != first["id"] {
				t.Errorf("served = %+v", got)
			}
			if !include {
				if got.Usage != (Usage{}) {
					t.Errorf("usage without include_usage = %+v, want zero", got.Usage)
				}
				return
			}
			last := decode(t, chunks[len(chunks)-1])
			if len(last["choices"].([]any)) != 0 {
				t.Errorf("usage chunk has choices: %v", last)
			}
			u := last["usage"]
			if num(t, u, "prompt_tokens") != want.InputTokens || num(t, u, "completion_tokens") != 7 ||
				num(t, u, "total_tokens") != want.InputTokens+7 || num(t, u, "prompt_tokens_details", "cached_tokens") != 0 ||
				num(t, u, "completion_tokens_details", "reasoning_tokens") != 0 {
				t.Errorf("usage = %v", u)
			}
			if got.Usage != want {
				t.Errorf("served usage = %+v, want %+v", got.Usage, want)
			}
		})
	}
}

func TestChatNonStreaming(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	out, resp := tb.sendJSON(t, "/v1/chat/completions", chatBodyOf(false, false, "say hi"), 200, openAIAuth...)
	choice := out["choices"].([]any)[0].(map[string]any)
	msg := choice["message"].(map[string]any)
	if out["object"] != "chat.completion" || msg["role"] != "assistant" || msg["content"] != "Hello from fakellm. You said: say hi" ||
		choice["finish_reason"] != "stop" || msg["tool_calls"] != nil {
		t.Errorf("completion = %v", out)
	}
	want := Usage{InputTokens: tokensOf("Be brief.say hi"), OutputTokens: 7}
	if num(t, out, "usage", "prompt_tokens") != want.InputTokens || num(t, out, "usage", "completion_tokens") != 7 {
		t.Errorf("usage = %v", out["usage"])
	}
	for _, h := range []string{"X-Request-Id", "X-Ratelimit-Limit-Requests", "X-Ratelimit-Remaining-Requests",
		"X-Ratelimit-Limit-Tokens", "X-Ratelimit-Remaining-Tokens", "X-Ratelimit-Reset-Requests", "X-Ratelimit-Reset-Tokens"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	if got := lastServed(t, tb.fake); got.Usage != want || got.Generated != want || got.Stream || !got.Complete {
		t.Errorf("served = %+v", got)
	}
}

// Reasoning is billed as output; cached tokens are part of the prompt but not of
// Usage.InputTokens.
func TestChatReasoningAndCache(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tb.fake.SetScript(func(*Request) Behavior { return Behavior{Thinking: true, CacheRead: 2} })
	question := strings.Repeat("q", 37)
	lines, _, err := tb.chatStream(t, chatBodyOf(true, true, question))
	if err != nil {
		t.Fatal(err)
	}
	total := tokensOf("Be brief." + question)
	u := decode(t, lines[len(lines)-2])["usage"]
	if num(t, u, "prompt_tokens") != total || num(t, u, "prompt_tokens_details", "cached_tokens") != 2 ||
		num(t, u, "completion_tokens_details", "reasoning_tokens") != thinkingWords {
		t.Errorf("usage = %v", u)
	}
	want := Usage{InputTokens: total - 2, CacheRead: 2, Reasoning: thinkingWords, OutputTokens: num(t, u, "completion_tokens")}
	if want.OutputTokens <= thinkingWords {
		t.Errorf("completion_tokens %d does not include the reasoning", want.OutputTokens)
	}
	if got := lastServed(t, tb.fake); got.Usage != want {
		t.Errorf("served usage = %+v, want %+v", got.Usage, want)
	}
}

const chatTools = `[{"type":"function","function":{"name":"exec","parameters":{"type":"object",
	"properties":{"cmd":{"type":"string"},"n":{"type":"integer"}},"required":["cmd","n"]}}}]`

func TestChatToolCalls(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	const wantArgs = `{"cmd":"echo fake-tool-ran","n":1}`
	req := `{"model":"gpt-4o-mini","stream":true,"tools":` + chatTools + `,"messages":[{"role":"user","content":"run FAKE_TOOL_CALL"}]}`
	lines, _, err := tb.chatStream(t, req)
	if err != nil {
		t.Fatal(err)
	}
	var args strings.Builder
	var header map[string]any
	var finish any
	for _, l := range lines[:len(lines)-1] {
		c := decode(t, l)["choices"].([]any)[0].(map[string]any)
		if f := c["finish_reason"]; f != nil {
			finish = f
		}
		calls, ok := c["delta"].(map[string]any)["tool_calls"].([]any)
		if !ok {
			continue
		}
		call := calls[0].(map[string]any)
		if call["id"] != nil {
			if header != nil {
				t.Errorf("two tool call headers")
			}
			header = call
		}
		args.WriteString(call["function"].(map[string]any)["arguments"].(string))
	}
	fn, _ := header["function"].(map[string]any)
	if header["type"] != "function" || !strings.HasPrefix(header["id"].(string), "call_fake_") || fn["name"] != "exec" || fn["arguments"] != "" {
		t.Errorf("tool call header = %v", header)
	}
	if args.String() != wantArgs || finish != "tool_calls" {
		t.Errorf("arguments %q, finish_reason %v", args.String(), finish)
	}

	out, _ := tb.sendJSON(t, "/v1/chat/completions", strings.Replace(req, `"stream":true`, `"stream":false`, 1), 200, openAIAuth...)
	choice := out["choices"].([]any)[0].(map[string]any)
	call := choice["message"].(map[string]any)["tool_calls"].([]any)[0].(map[string]any)
	if choice["finish_reason"] != "tool_calls" || call["function"].(map[string]any)["arguments"] != wantArgs {
		t.Errorf("non-streaming = %v", out)
	}

	// After the tool result the marker in the earlier turn no longer applies.
	followUp := `{"model":"gpt-4o-mini","tools":` + chatTools + `,"messages":[{"role":"user","content":"run FAKE_TOOL_CALL"},
		{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"exec","arguments":"{}"}}]},
		{"role":"tool","tool_call_id":"call_1","content":"fake-tool-ran"}]}`
	out, _ = tb.sendJSON(t, "/v1/chat/completions", followUp, 200, openAIAuth...)
	choice = out["choices"].([]any)[0].(map[string]any)
	if choice["finish_reason"] != "stop" || choice["message"].(map[string]any)["content"] != "Hello from fakellm." {
		t.Errorf("follow-up = %v", out)
	}
}

func TestChatMidStreamError(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	lines, _, err := tb.chatStream(t, chatBodyOf(true, true, "FAKE_MIDSTREAM_ERROR"))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 {
		t.Fatalf("lines = %v", lines)
	}
	e := decode(t, lines[2])["error"].(map[string]any)
	if e["type"] != "server_error" || e["message"] == "" {
		t.Errorf("error line = %s", lines[2])
	}
	got := lastServed(t, tb.fake)
	if got.Complete || got.Usage != (Usage{}) || got.Generated.OutputTokens == 0 || got.EventsWritten != 3 {
		t.Errorf("served = %+v", got)
	}
}

func TestChatCut(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	lines, _, err := tb.chatStream(t, chatBodyOf(true, true, "FAKE_CUT_2"))
	if len(lines) != 2 || err == nil {
		t.Errorf("FAKE_CUT_2: %d lines, %v", len(lines), err)
	}
	if got := lastServed(t, tb.fake); got.Complete || got.Usage != (Usage{}) || got.EventsWritten != 2 {
		t.Errorf("served = %+v", got)
	}
}

func TestChatErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		behavior    Behavior
		body        string
		header      []string
		wantStatus  int
		wantType    string
		wantCode    any
		wantHeaders map[string]string
		check       func(t *testing.T, e map[string]any)
	}{
		{
			name: "rate limited", behavior: Behavior{Status: 429, Headers: map[string]string{"retry-after": "3"}},
			wantStatus: 429, wantType: "requests", wantCode: "rate_limit_exceeded",
			wantHeaders: map[string]string{"Retry-After": "3", "X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Remaining-Tokens": "0"},
			check: func(t *testing.T, e map[string]any) {
				if !strings.Contains(e["message"].(string), "try again in 3s") {
					t.Errorf("message = %v", e["message"])
				}
			},
		},
		{
			name: "usage limit", behavior: Behavior{Status: 429, ErrorCode: "usage_limit_reached", Headers: map[string]string{"retry-after": "120"}},
			wantStatus: 429, wantType: "usage_limit_reached", wantCode: "usage_limit_reached",
			check: func(t *testing.T, e map[string]any) {
				now := time.Now().Unix()
				if num(t, e, "resets_in_seconds") != 120 || num(t, e, "resets_at") < now+110 || num(t, e, "resets_at") > now+130 || e["plan_type"] == nil {
					t.Errorf("usage limit error = %v", e)
				}
			},
		},
		{name: "insufficient quota", behavior: Behavior{Status: 429, ErrorCode: "insufficient_quota"}, wantStatus: 429, wantType: "insufficient_quota", wantCode: "insufficient_quota"},
		{name: "server error", behavior: Behavior{Status: 500}, wantStatus: 500, wantType: "server_error", wantCode: nil},
		{name: "marker", body: chatBodyOf(false, false, "FAKE_ERROR_429"), wantStatus: 429, wantType: "requests", wantCode: "rate_limit_exceeded",
			wantHeaders: map[string]string{"Retry-After": "1"}},
		{name: "no key", header: []string{}, wantStatus: 401, wantType: "invalid_request_error", wantCode: nil},
		{name: "missing model", body: `{"messages":[{"role":"user","content":"hi"}]}`, wantStatus: 400, wantType: "invalid_request_error", wantCode: nil},
		{name: "missing messages", body: `{"model":"gpt-4o"}`, wantStatus: 400, wantType: "invalid_request_error", wantCode: "missing_required_parameter"},
		{name: "invalid JSON", body: `{"model":`, wantStatus: 400, wantType: "invalid_request_error", wantCode: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t, Options{})
			tb.fake.SetScript(func(*Request) Behavior { return tt.behavior })
			body, header := tt.body, tt.header
			if body == "" {
				body = chatBodyOf(true, true, "hi")
			}
			if header == nil {
				header = openAIAuth
			}
			out, resp := tb.sendJSON(t, "/v1/chat/completions", body, tt.wantStatus, header...)
			e := out["error"].(map[string]any)
			if e["type"] != tt.wantType || e["code"] != tt.wantCode || e["message"] == "" || !hasKey(e, "param") {
				t.Errorf("error = %v", e)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Error("no x-request-id")
			}
			for k, v := range tt.wantHeaders {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if tt.check != nil {
				tt.check(t, e)
			}
			if got := lastServed(t, tb.fake); got.Status != tt.wantStatus || got.Usage != (Usage{}) || got.Generated != (Usage{}) ||
				got.Provider != ProviderOpenAI || got.Endpoint != EndpointChat {
				t.Errorf("served = %+v", got)
			}
		})
	}
}

func hasKey(m map[string]any, k string) bool {
	_, ok := m[k]
	return ok
}
