package fakellm

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

var geminiAuth = []string{"X-Goog-Api-Key", "AIza-test"}

func geminiBodyOf(userText string) string {
	return `{"systemInstruction":{"parts":[{"text":"Be brief."}]},"contents":[
		{"role":"user","parts":[{"text":"first"}]},
		{"role":"model","parts":[{"text":"ok"}]},
		{"role":"user","parts":[{"text":` + mustJSON(userText) + `}]}]}`
}

// geminiText concatenates the text parts of chunks, thoughts left out.
func geminiText(t *testing.T, chunks []map[string]any) string {
	t.Helper()
	var sb strings.Builder
	for _, c := range chunks {
		for _, p := range c["candidates"].([]any)[0].(map[string]any)["content"].(map[string]any)["parts"].([]any) {
			part := p.(map[string]any)
			if s, ok := part["text"].(string); ok && part["thought"] == nil {
				sb.WriteString(s)
			}
		}
	}
	return sb.String()
}

func finishReason(c map[string]any) any {
	return c["candidates"].([]any)[0].(map[string]any)["finishReason"]
}

func TestGeminiGenerate(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	out, _ := tb.sendJSON(t, "/v1beta/models/gemini-2.5-flash:generateContent", geminiBodyOf("say hi"), 200, geminiAuth...)
	input := tokensOf("Be brief." + "first" + "ok" + "say hi")
	u := out["usageMetadata"].(map[string]any)
	if geminiText(t, []map[string]any{out}) != "Hello from fakellm. You said: say hi" || finishReason(out) != "STOP" ||
		out["modelVersion"] != "gemini-2.5-flash" || out["responseId"] == "" {
		t.Errorf("response = %v", out)
	}
	if num(t, u, "promptTokenCount") != input || num(t, u, "candidatesTokenCount") != 7 || num(t, u, "totalTokenCount") != input+7 ||
		hasKey(u, "cachedContentTokenCount") || hasKey(u, "thoughtsTokenCount") {
		t.Errorf("usageMetadata = %v", u)
	}
	want := Usage{InputTokens: input, OutputTokens: 7}
	got := lastServed(t, tb.fake)
	if got.Provider != ProviderGemini || got.Endpoint != EndpointGeminiGenerate || got.Model != "gemini-2.5-flash" ||
		got.Usage != want || got.Generated != want || got.Stream || got.MessageID != out["responseId"] {
		t.Errorf("served = %+v", got)
	}
}

func TestGeminiStreamSSE(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	resp := tb.send(t, http.MethodPost, "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse&key=AIza-test", geminiBodyOf("say hi"))
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines, err := readDataLines(t, resp.Body)
	if err != nil || len(lines) != 7 {
		t.Fatalf("%d lines, %v", len(lines), err)
	}
	var chunks []map[string]any
	for i, l := range lines {
		c := decode(t, l)
		chunks = append(chunks, c)
		if got := num(t, c, "usageMetadata", "candidatesTokenCount"); got != int64(i+1) {
			t.Errorf("chunk %d candidatesTokenCount = %d", i, got)
		}
		if (finishReason(c) != nil) != (i == 6) {
			t.Errorf("chunk %d finishReason = %v", i, finishReason(c))
		}
	}
	if text := geminiText(t, chunks); text != "Hello from fakellm. You said: say hi" {
		t.Errorf("text = %q", text)
	}
	got := lastServed(t, tb.fake)
	if !got.Stream || !got.Complete || got.Usage.OutputTokens != 7 || got.Usage != got.Generated || got.EventsWritten != 7 {
		t.Errorf("served = %+v", got)
	}
}

func TestGeminiStreamJSONArray(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	resp := tb.send(t, http.MethodPost, "/v1beta/models/gemini-2.5-pro:streamGenerateContent", geminiBodyOf("say hi"), geminiAuth...)
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("%d %v %s", resp.StatusCode, err, resp.Header)
	}
	if !strings.HasPrefix(string(raw), "[{") || !strings.HasSuffix(string(raw), "}]") || strings.Count(string(raw), "},\n{") != 6 {
		t.Errorf("body is not [{…},\\n{…}]: %s", raw)
	}
	var chunks []map[string]any
	if err := json.Unmarshal(raw, &chunks); err != nil || len(chunks) != 7 {
		t.Fatalf("%d chunks, %v", len(chunks), err)
	}
	if geminiText(t, chunks) != "Hello from fakellm. You said: say hi" || finishReason(chunks[6]) != "STOP" {
		t.Errorf("chunks = %v", chunks)
	}

	// The array is written element by element: a cut leaves the elements sent so far.
	tb.fake.SetScript(func(*Request) Behavior { return Behavior{CutAfterEvents: 2} })
	resp = tb.send(t, http.MethodPost, "/v1beta/models/gemini-2.5-pro:streamGenerateContent", geminiBodyOf("say hi"), geminiAuth...)
	raw, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.HasPrefix(string(raw), "[{") || strings.Count(string(raw), "},\n{") != 1 {
		t.Errorf("cut stream: %v %s", err, raw)
	}
	if got := tb.fake.Served()[1]; got.Complete || got.EventsWritten != 2 || got.Usage.OutputTokens != 2 {
		t.Errorf("cut served = %+v", got)
	}
}

func TestGeminiMidStreamError(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	const path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
	resp := tb.send(t, http.MethodPost, path+"?alt=sse", geminiBodyOf("FAKE_MIDSTREAM_ERROR"), geminiAuth...)
	lines, err := readDataLines(t, resp.Body)
	resp.Body.Close()
	if err != nil || len(lines) != 2 {
		t.Fatalf("%d lines, %v", len(lines), err)
	}
	if e := decode(t, lines[1])["error"].(map[string]any); e["status"] != "UNAVAILABLE" || num(t, e, "code") != 503 {
		t.Errorf("error line = %s", lines[1])
	}

	resp = tb.send(t, http.MethodPost, path, geminiBodyOf("FAKE_MIDSTREAM_ERROR"), geminiAuth...)
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var chunks []map[string]any
	if err := json.Unmarshal(raw, &chunks); err != nil || len(chunks) != 2 || chunks[1]["error"] == nil {
		t.Errorf("array with error: %v %s", err, raw)
	}
	for _, got := range tb.fake.Served() {
		if got.Complete || got.Usage.OutputTokens != 1 || got.Generated.OutputTokens <= 1 {
			t.Errorf("served = %+v", got)
		}
	}
}

func TestGeminiToolsAndThoughts(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tb.fake.SetScript(func(*Request) Behavior { return Behavior{Thinking: true, ToolUse: true, CacheRead: 3} })
	body := `{"contents":[{"role":"user","parts":[{"text":"list files"}]}],
		"tools":[{"googleSearch":{}},{"functionDeclarations":[{"name":"run_shell","parameters":{"type":"OBJECT",
			"properties":{"command":{"type":"STRING"},"timeout":{"type":"INTEGER"}},"required":["command","timeout"]}}]}],
		"generationConfig":{"thinkingConfig":{"includeThoughts":true}}}`
	resp := tb.send(t, http.MethodPost, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", body, geminiAuth...)
	lines, err := readDataLines(t, resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	// thought words, then "Hello from fakellm. You said: list files", then the call.
	if want := int(thinkingWords) + 7 + 1; len(lines) != want {
		t.Fatalf("%d chunks, want %d", len(lines), want)
	}
	first := decode(t, lines[0])["candidates"].([]any)[0].(map[string]any)["content"].(map[string]any)["parts"].([]any)[0].(map[string]any)
	if first["thought"] != true {
		t.Errorf("first part = %v", first)
	}
	last := decode(t, lines[len(lines)-1])
	call := last["candidates"].([]any)[0].(map[string]any)["content"].(map[string]any)["parts"].([]any)[0].(map[string]any)["functionCall"].(map[string]any)
	if call["name"] != "run_shell" || mustJSON(call["args"]) != `{"command":"echo fake-tool-ran","timeout":1}` || finishReason(last) != "STOP" {
		t.Errorf("last chunk = %v", last)
	}
	u := last["usageMetadata"]
	prompt := tokensOf("list files")
	candidates := num(t, u, "candidatesTokenCount")
	if num(t, u, "promptTokenCount") != prompt || num(t, u, "cachedContentTokenCount") != 3 ||
		num(t, u, "thoughtsTokenCount") != thinkingWords || num(t, u, "totalTokenCount") != prompt+candidates+thinkingWords {
		t.Errorf("usageMetadata = %v", u)
	}
	want := Usage{InputTokens: prompt - 3, CacheRead: 3, OutputTokens: candidates + thinkingWords, Reasoning: thinkingWords}
	if got := lastServed(t, tb.fake); got.Usage != want || got.Generated != want {
		t.Errorf("served = %+v, want %+v", got.Usage, want)
	}

	// Without includeThoughts the thoughts are only counted.
	tb.fake.Reset()
	out, _ := tb.sendJSON(t, "/v1beta/models/gemini-2.5-flash:generateContent", strings.Replace(body, "true}}}", "false}}}", 1), 200, geminiAuth...)
	parts := out["candidates"].([]any)[0].(map[string]any)["content"].(map[string]any)["parts"].([]any)
	if len(parts) != 2 || num(t, out, "usageMetadata", "thoughtsTokenCount") != thinkingWords {
		t.Errorf("response = %v", out)
	}
}

func TestGeminiCountTokens(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	want := tokensOf("Be brief." + "first" + "ok" + "say hi")
	out, _ := tb.sendJSON(t, "/v1beta/models/gemini-2.5-flash:countTokens", geminiBodyOf("say hi"), 200, geminiAuth...)
	if num(t, out, "totalTokens") != want {
		t.Errorf("countTokens = %v", out)
	}
	wrapped := `{"generateContentRequest":{"model":"models/gemini-2.5-flash",` + strings.TrimPrefix(geminiBodyOf("say hi"), "{") + `}`
	out, _ = tb.sendJSON(t, "/v1beta/models/gemini-2.5-flash:countTokens", wrapped, 200, geminiAuth...)
	if num(t, out, "totalTokens") != want {
		t.Errorf("wrapped countTokens = %v", out)
	}
	for _, got := range tb.fake.Served() {
		if got.Endpoint != EndpointGeminiCount || got.Usage != (Usage{InputTokens: want}) || got.Generated != got.Usage {
			t.Errorf("served = %+v", got)
		}
	}
}

func TestGeminiModels(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	get := func(path string, header ...string) (int, map[string]any) {
		resp := tb.send(t, http.MethodGet, path, "", header...)
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, out
	}
	status, list := get("/v1beta/models?key=AIza-test")
	first, _ := list["models"].([]any)[0].(map[string]any)
	if status != 200 || !strings.HasPrefix(first["name"].(string), "models/gemini-") || first["supportedGenerationMethods"] == nil {
		t.Errorf("list: %d %v", status, list)
	}
	if status, one := get("/v1beta/models/gemini-2.5-pro", geminiAuth...); status != 200 || one["name"] != "models/gemini-2.5-pro" {
		t.Errorf("one: %d %v", status, one)
	}
	if status, missing := get("/v1beta/models/nope", geminiAuth...); status != 404 || missing["error"].(map[string]any)["status"] != "NOT_FOUND" {
		t.Errorf("missing: %d %v", status, missing)
	}
}

func TestGeminiErrors(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{APIKeys: []string{"AIza-test"}})
	const path = "/v1beta/models/gemini-2.5-flash:generateContent"
	tests := []struct {
		name       string
		body       string
		header     []string
		wantStatus int
		wantState  string
	}{
		{"rate limited", geminiBodyOf("FAKE_ERROR_429"), geminiAuth, 429, "RESOURCE_EXHAUSTED"},
		{"overloaded", geminiBodyOf("FAKE_ERROR_503"), geminiAuth, 503, "UNAVAILABLE"},
		{"no key", geminiBodyOf("hi"), nil, 403, "PERMISSION_DENIED"},
		{"bad key", geminiBodyOf("hi"), []string{"X-Goog-Api-Key", "AIza-bad"}, 400, "INVALID_ARGUMENT"},
		{"no contents", `{"contents":[]}`, geminiAuth, 400, "INVALID_ARGUMENT"},
		{"invalid JSON", `{"contents":`, geminiAuth, 400, "INVALID_ARGUMENT"},
	}
	for _, tt := range tests {
		out, _ := tb.sendJSON(t, path, tt.body, tt.wantStatus, tt.header...)
		e := out["error"].(map[string]any)
		if num(t, e, "code") != int64(tt.wantStatus) || e["status"] != tt.wantState || e["message"] == "" {
			t.Errorf("%s: error = %v", tt.name, e)
		}
		switch tt.name {
		case "rate limited":
			details := mustJSON(e["details"])
			if !strings.Contains(details, `"retryDelay":"1s"`) || !strings.Contains(details, "QuotaFailure") {
				t.Errorf("429 details = %s", details)
			}
		case "bad key":
			if !strings.Contains(mustJSON(e["details"]), `"reason":"API_KEY_INVALID"`) {
				t.Errorf("bad key details = %v", e["details"])
			}
		}
	}
	for _, got := range tb.fake.Served() {
		if got.Provider != ProviderGemini || got.Usage != (Usage{}) || got.Generated != (Usage{}) || got.Status < 400 {
			t.Errorf("served = %+v", got)
		}
	}
}
