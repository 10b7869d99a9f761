package fakellm

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSplitWords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{"", []string{}},
		{"one", []string{"one"}},
		{"one two", []string{"one ", "two"}},
		{"  lead  two\n", []string{"  lead  ", "two\n"}},
		{"   ", []string{"   "}},
		{"héllo wörld", []string{"héllo ", "wörld"}},
	}
	for _, tt := range tests {
		if got := splitWords(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("splitWords(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFitWords(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"a b c", 2, "a b "},
		{"a b c", 3, "a b c"},
		{"a b c", 5, "a b c blah blah"},
		{"a b ", 3, "a b blah"},
	} {
		if got := fitWords(tt.in, tt.n); got != tt.want || len(splitWords(got)) != tt.n {
			t.Errorf("fitWords(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestAppendString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", "quote\" back\\slash", "ctl\x00\x01\x1f\n\r\t", "bad\xffutf8", "ünï 😀", "\u2028"} {
		var back string
		if err := json.Unmarshal(appendString(nil, s), &back); err != nil {
			t.Errorf("appendString(%q) is not JSON: %v", s, err)
			continue
		}
		want, _ := json.Marshal(s)
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("appendString(%q) round-trips to %q, want %q", s, back, wantBack)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(body(true, "say hi")))
	f.Add([]byte(`{"model":"m","system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral","ttl":"1h"}}],` +
		`"messages":[{"role":"user","content":[{"type":"tool_result","content":[{"type":"text","text":"x"}]},{"type":"text","text":"FAKE_THINKING FAKE_TOOL_CALL"}]}],` +
		`"tools":[{"name":"t","input_schema":{"properties":{"a":{"type":["null","integer"]}},"required":["a","\u00e9"]}}]}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"FAKE_MIDSTREAM_ERROR FAKE_ERROR_4"}],"stream":true}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":null}],"tools":{}}`))
	f.Add([]byte(`[`))

	fake := New(Options{})
	// No waits and no cuts: the fuzzer checks the bytes, not the timing.
	fake.SetScript(func(*Request) Behavior { return Behavior{EventDelay: time.Nanosecond, CutAfterEvents: 1 << 30} })

	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := parseRequest(in)
		if err != nil {
			return
		}
		for _, b := range []Behavior{{}, {Thinking: true, ToolUse: true, OutputTokens: 3}} {
			rp := buildReply(p, &b, "1")
			if msg := appendMessage(nil, "msg_1", p.body.Model, &rp); !json.Valid(msg) {
				t.Fatalf("invalid message JSON: %s", msg)
			}
		}

		req := httptest.NewRequest(http.MethodPost, "/v1/messages", bytes.NewReader(in))
		req.Header.Set("X-Api-Key", "k")
		rec := httptest.NewRecorder()
		fake.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("invalid error JSON: %s", rec.Body.Bytes())
			}
			return
		}
		for line := range strings.Lines(rec.Body.String()) {
			if data, ok := strings.CutPrefix(line, "data: "); ok && !json.Valid([]byte(data)) {
				t.Fatalf("invalid data line: %s", data)
			}
		}
		if !p.body.Stream && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("invalid message JSON: %s", rec.Body.Bytes())
		}
		fake.Reset()
	})
}

func FuzzDialects(f *testing.F) {
	f.Add([]byte(chatBodyOf(true, true, "FAKE_TOOL_CALL FAKE_THINKING")))
	f.Add([]byte(`{"model":"m","stream":true,"tools":` + chatTools + `,"messages":[{"role":"user","content":[{"type":"text","text":"FAKE_TOOL_CALL"}]}]}`))
	f.Add([]byte(strings.Replace(codexBody(true, "FAKE_TOOL_CALL FAKE_THINKING"), `"store":false`, `"reasoning":{"summary":"auto"}`, 1)))
	f.Add([]byte(codexBody(true, "FAKE_MIDSTREAM_ERROR")))
	f.Add([]byte(`{"model":"m","input":"FAKE_ERROR_429","stream":true}`))
	f.Add([]byte(`{"contents":[{"parts":[{"text":"FAKE_TOOL_CALL FAKE_THINKING \u0000 \ud800"}]}],"tools":[{"functionDeclarations":[{"name":"f","parametersJsonSchema":{"required":["a"]}}]}],` +
		`"generation_config":{"thinking_config":{"include_thoughts":true}}}`))
	f.Add([]byte(`{"contents":[{"parts":[{"text":"FAKE_MIDSTREAM_ERROR"}]}]}`))
	f.Add([]byte(`{"model":"m","input":5,"messages":{}}`))
	f.Add([]byte(`[`))

	fake := New(Options{})
	fake.SetScript(func(*Request) Behavior { return Behavior{EventDelay: time.Nanosecond, CutAfterEvents: 1 << 30} })
	paths := []string{
		"/v1/chat/completions",
		"/v1/responses",
		"/v1beta/models/m:generateContent",
		"/v1beta/models/m:streamGenerateContent",
		"/v1beta/models/m:streamGenerateContent?alt=sse",
		"/v1beta/models/m:countTokens",
	}

	f.Fuzz(func(t *testing.T, in []byte) {
		for _, path := range paths {
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(in))
			req.Header.Set("Authorization", "Bearer k")
			rec := httptest.NewRecorder()
			fake.ServeHTTP(rec, req)
			out := rec.Body.String()
			if !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/event-stream") {
				if !json.Valid([]byte(out)) {
					t.Fatalf("%s: invalid JSON: %s", path, out)
				}
				continue
			}
			for line := range strings.Lines(out) {
				data, ok := strings.CutPrefix(line, "data: ")
				if ok && data != "[DONE]\n" && !json.Valid([]byte(data)) {
					t.Fatalf("%s: invalid data line: %s", path, data)
				}
			}
		}
		fake.Reset()
	})
}
