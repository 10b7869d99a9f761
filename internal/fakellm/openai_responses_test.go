package fakellm

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// codexBody is a Responses request shaped like Codex's: developer and user messages,
// a namespace and a function tool.
func codexBody(stream bool, userText string) string {
	return `{"model":"gpt-5-codex","stream":` + mustJSON(stream) + `,"instructions":"Be brief.","input":[
		{"type":"message","role":"developer","content":[{"type":"input_text","text":"You are Codex."}]},
		{"type":"message","role":"user","content":[{"type":"input_text","text":` + mustJSON(userText) + `}]}],
		"tools":[{"type":"namespace","name":"multi_agent_v1","tools":[]},
		{"type":"function","name":"exec_command","strict":false,"parameters":{"type":"object","properties":{"cmd":{"type":"string"},"workdir":{"type":"string"}},"required":["cmd"]}},
		{"type":"web_search","external_web_access":false}],
		"tool_choice":"auto","parallel_tool_calls":true,"store":false}`
}

// responsesStream posts a streaming Responses request to path and reads its events.
func (tb *testBundle) responsesStream(t *testing.T, path, body string) ([]sseEvent, error) {
	t.Helper()
	resp := tb.send(t, http.MethodPost, path, body, openAIAuth...)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("status = %d: %s", resp.StatusCode, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
		t.Errorf("content-type = %q", ct)
	}
	events, err := readEvents(t, resp.Body)
	for i, e := range events {
		if num(t, e.data, "sequence_number") != int64(i) {
			t.Errorf("event %d (%s) has sequence_number %v", i, e.name, e.data["sequence_number"])
		}
	}
	return events, err
}

func TestResponsesStream(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"/v1/responses", "/backend-api/codex/responses"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			tb := setup(t, Options{})
			events, err := tb.responsesStream(t, path, codexBody(true, "say hi"))
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
			for range 7 {
				want = append(want, "response.output_text.delta")
			}
			want = append(want, "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed")
			if got := eventNames(events); !slices.Equal(got, want) {
				t.Fatalf("events = %v\nwant     %v", got, want)
			}

			created := events[0].data["response"].(map[string]any)
			if created["status"] != "in_progress" || created["usage"] != nil || len(created["output"].([]any)) != 0 ||
				created["object"] != "response" || created["model"] != "gpt-5-codex" || created["instructions"] != "Be brief." {
				t.Errorf("response.created = %v", created)
			}
			added := events[2].data["item"].(map[string]any)
			if added["type"] != "message" || added["status"] != "in_progress" || added["role"] != "assistant" {
				t.Errorf("output_item.added = %v", added)
			}
			var text strings.Builder
			for _, e := range events[4:11] {
				if e.data["item_id"] != added["id"] {
					t.Errorf("delta item_id = %v", e.data["item_id"])
				}
				text.WriteString(e.data["delta"].(string))
			}
			const wantText = "Hello from fakellm. You said: say hi"
			if text.String() != wantText || events[11].data["text"] != wantText {
				t.Errorf("text = %q, done %v", text.String(), events[11].data["text"])
			}
			done := events[13].data["item"].(map[string]any)
			part := done["content"].([]any)[0].(map[string]any)
			if done["status"] != "completed" || part["type"] != "output_text" || part["text"] != wantText {
				t.Errorf("output_item.done = %v", done)
			}

			completed := events[14].data["response"].(map[string]any)
			input := tokensOf("Be brief." + "You are Codex." + "say hi")
			u := completed["usage"]
			if completed["status"] != "completed" || len(completed["output"].([]any)) != 1 ||
				num(t, u, "input_tokens") != input || num(t, u, "input_tokens_details", "cached_tokens") != 0 ||
				num(t, u, "output_tokens") != 7 || num(t, u, "output_tokens_details", "reasoning_tokens") != 0 ||
				num(t, u, "total_tokens") != input+7 {
				t.Errorf("response.completed = %v", completed)
			}
			got := lastServed(t, tb.fake)
			wantUsage := Usage{InputTokens: input, OutputTokens: 7}
			if got.Provider != ProviderOpenAI || got.Endpoint != EndpointResponses || got.Path != path || !got.Complete ||
				got.Usage != wantUsage || got.Generated != wantUsage || got.MessageID != completed["id"] || got.EventsWritten != 15 {
				t.Errorf("served = %+v", got)
			}
		})
	}
}

func TestResponsesNonStreaming(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	out, _ := tb.sendJSON(t, "/v1/responses", `{"model":"gpt-5","input":"say hi"}`, 200, openAIAuth...)
	item := out["output"].([]any)[0].(map[string]any)
	part := item["content"].([]any)[0].(map[string]any)
	if out["object"] != "response" || out["status"] != "completed" || out["instructions"] != nil ||
		item["type"] != "message" || part["text"] != "Hello from fakellm. You said: say hi" {
		t.Errorf("response = %v", out)
	}
	if num(t, out, "usage", "input_tokens") != tokensOf("say hi") || num(t, out, "usage", "output_tokens") != 7 {
		t.Errorf("usage = %v", out["usage"])
	}
	if got := lastServed(t, tb.fake); got.Stream || !got.Complete || got.Usage.OutputTokens != 7 {
		t.Errorf("served = %+v", got)
	}
}

func TestResponsesFunctionCall(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	events, err := tb.responsesStream(t, "/v1/responses", codexBody(true, "list files FAKE_TOOL_CALL"))
	if err != nil {
		t.Fatal(err)
	}
	const wantArgs = `{"cmd":"echo fake-tool-ran"}`
	var added, done map[string]any
	var args strings.Builder
	var argsDone map[string]any
	for _, e := range events {
		switch e.name {
		case "response.output_item.added":
			if it := e.data["item"].(map[string]any); it["type"] == "function_call" {
				added = it
			}
		case "response.output_item.done":
			if it := e.data["item"].(map[string]any); it["type"] == "function_call" {
				done = it
			}
		case "response.function_call_arguments.delta":
			args.WriteString(e.data["delta"].(string))
		case "response.function_call_arguments.done":
			argsDone = e.data
		}
	}
	if added["name"] != "exec_command" || added["arguments"] != "" || added["status"] != "in_progress" ||
		!strings.HasPrefix(added["call_id"].(string), "call_fake_") || !strings.HasPrefix(added["id"].(string), "fc_fake_") {
		t.Errorf("function_call added = %v", added)
	}
	if args.String() != wantArgs || argsDone["arguments"] != wantArgs || argsDone["item_id"] != added["id"] {
		t.Errorf("arguments %q, done %v", args.String(), argsDone)
	}
	if done["arguments"] != wantArgs || done["status"] != "completed" || done["call_id"] != added["call_id"] {
		t.Errorf("function_call done = %v", done)
	}
	completed := events[len(events)-1].data["response"].(map[string]any)
	if output := completed["output"].([]any); len(output) != 2 || output[1].(map[string]any)["type"] != "function_call" {
		t.Errorf("completed output = %v", completed["output"])
	}

	// Codex's next turn ends with the tool output: the answer is text.
	followUp := `{"model":"gpt-5-codex","input":[
		{"type":"message","role":"user","content":[{"type":"input_text","text":"list files FAKE_TOOL_CALL"}]},
		{"type":"function_call","call_id":"call_1","name":"exec_command","arguments":"{}"},
		{"type":"function_call_output","call_id":"call_1","output":"fake-tool-ran"}],
		"tools":[{"type":"function","name":"exec_command","parameters":{"required":["cmd"]}}]}`
	out, _ := tb.sendJSON(t, "/v1/responses", followUp, 200, openAIAuth...)
	if output := out["output"].([]any); len(output) != 1 || output[0].(map[string]any)["type"] != "message" {
		t.Errorf("follow-up output = %v", out["output"])
	}
	if num(t, out, "usage", "input_tokens") != tokensOf("list files FAKE_TOOL_CALL"+"fake-tool-ran") {
		t.Errorf("follow-up usage = %v", out["usage"])
	}
}

func TestResponsesReasoning(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tb.fake.SetScript(func(*Request) Behavior { return Behavior{Thinking: true} })
	body := strings.Replace(codexBody(true, "hi"), `"store":false`, `"store":false,"reasoning":{"summary":"auto"}`, 1)
	events, err := tb.responsesStream(t, "/v1/responses", body)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.reasoning_summary_part.added"}
	for range thinkingWords {
		want = append(want, "response.reasoning_summary_text.delta")
	}
	want = append(want, "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done")
	if got := eventNames(events)[:len(want)]; !slices.Equal(got, want) {
		t.Errorf("events = %v\nwant     %v", got, want)
	}
	completed := events[len(events)-1].data["response"].(map[string]any)
	reasoning := completed["output"].([]any)[0].(map[string]any)
	if reasoning["type"] != "reasoning" || reasoning["summary"].([]any)[0].(map[string]any)["text"] != thinkingText {
		t.Errorf("reasoning item = %v", reasoning)
	}
	if r := num(t, completed, "usage", "output_tokens_details", "reasoning_tokens"); r != thinkingWords ||
		num(t, completed, "usage", "output_tokens") != thinkingWords+6 { // "Hello from fakellm. You said: hi"
		t.Errorf("usage = %v", completed["usage"])
	}
	if got := lastServed(t, tb.fake); got.Usage.Reasoning != thinkingWords || got.Usage.OutputTokens != thinkingWords+6 {
		t.Errorf("served = %+v", got)
	}

	// Without a summary the reasoning item has none, and no summary events.
	tb.fake.Reset()
	events, _ = tb.responsesStream(t, "/v1/responses", codexBody(true, "hi"))
	if events[3].name != "response.output_item.done" || len(events[3].data["item"].(map[string]any)["summary"].([]any)) != 0 {
		t.Errorf("events = %v", eventNames(events))
	}
}

func TestResponsesFailed(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tb.fake.SetScript(func(*Request) Behavior {
		return Behavior{MidStreamError: true, ErrorCode: "rate_limit_exceeded", ErrorMessage: "Rate limit reached. Please try again in 1.5s."}
	})
	events, err := tb.responsesStream(t, "/v1/responses", codexBody(true, "hi"))
	if err != nil {
		t.Fatal(err)
	}
	last := events[len(events)-1]
	resp := last.data["response"].(map[string]any)
	e := resp["error"].(map[string]any)
	if last.name != "response.failed" || len(events) != 6 || resp["status"] != "failed" || resp["usage"] != nil ||
		e["code"] != "rate_limit_exceeded" || e["message"] != "Rate limit reached. Please try again in 1.5s." {
		t.Errorf("events %v, last %s", eventNames(events), last.raw)
	}
	if got := lastServed(t, tb.fake); got.Complete || got.Usage != (Usage{}) || got.Generated.OutputTokens != 6 {
		t.Errorf("served = %+v", got)
	}
}

// The WebSocket upgrade Codex's built-in provider tries first gets 426 with an empty
// body, which makes it fall back to HTTP.
func TestResponsesWebSocketUpgrade(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	for _, path := range []string{"/v1/responses", "/backend-api/codex/responses"} {
		resp := tb.send(t, http.MethodGet, path, "", "Connection", "Upgrade", "Upgrade", "websocket",
			"Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==",
			"OpenAI-Beta", "responses_websockets=2026-02-06", "Authorization", "Bearer sk-test")
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUpgradeRequired || len(raw) != 0 {
			t.Errorf("%s: %d %q", path, resp.StatusCode, raw)
		}
	}
	served := tb.fake.Served()
	if len(served) != 2 || served[0].Status != 426 || served[0].Endpoint != EndpointResponses || !served[0].Complete {
		t.Errorf("served = %+v", served)
	}

	// A plain GET is not the upgrade.
	resp := tb.send(t, http.MethodGet, "/v1/responses", "", openAIAuth...)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("plain GET: %d", resp.StatusCode)
	}
}

func TestResponsesErrors(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	out, resp := tb.sendJSON(t, "/v1/responses", codexBody(true, "FAKE_ERROR_429"), 429, openAIAuth...)
	e := out["error"].(map[string]any)
	if e["code"] != "rate_limit_exceeded" || resp.Header.Get("Retry-After") != "1" || resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("429 = %v %v", out, resp.Header)
	}
	out, _ = tb.sendJSON(t, "/v1/responses", `{"input":"hi"}`, 400, openAIAuth...)
	if e := out["error"].(map[string]any); e["param"] != "model" {
		t.Errorf("missing model = %v", out)
	}
	tb.sendJSON(t, "/v1/responses", `{"model":"m","input":5}`, 400, openAIAuth...)
}
