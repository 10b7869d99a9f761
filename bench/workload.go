package main

import (
	"encoding/json"
	"fmt"
	"strings"
)

// benchModel is priced in the default catalogue, so the proxy bills every request.
const benchModel = "claude-sonnet-4-5"

// nonStreamBody is a small non-streaming request: fakellm answers with a short JSON
// message.
func nonStreamBody() []byte {
	return []byte(`{"model":"` + benchModel + `","max_tokens":256,"messages":[{"role":"user","content":"Hello from the Tollgate bench."}]}`)
}

// streamEvents is the number of SSE events streamBody makes fakellm send.
const streamEvents = 64

// streamBody is a streaming request that makes fakellm send exactly 64 SSE events.
// fakellm cannot be told a reply length over HTTP: its reply echoes at most 60 runes of
// the last user text, one delta per word, so text alone tops out at 41 events. The
// markers in a separate text block add a thinking block and a tool call:
//
//	message_start                                   1
//	thinking: start, ping, 13 deltas, signature, stop 17
//	text: start, 35 word deltas ("Hello from fakellm. You said: " + 30 × "a "), stop 37
//	tool_use: start, 5 input_json deltas ({"command":"echo fake-tool-ran"}), stop 7
//	message_delta, message_stop                     2
//
// slowMs > 0 adds FAKE_SLOW_<slowMs>, a pause of that many milliseconds between events.
func streamBody(slowMs int) []byte {
	markers := "FAKE_THINKING FAKE_TOOL_CALL"
	if slowMs > 0 {
		markers += fmt.Sprintf(" FAKE_SLOW_%d", slowMs)
	}
	body := map[string]any{
		"model":      benchModel,
		"max_tokens": 1024,
		"stream":     true,
		"tools": []any{map[string]any{
			"name":        "run",
			"description": "Run a shell command.",
			"input_schema": map[string]any{
				"type":       "object",
				"properties": map[string]any{"command": map[string]any{"type": "string"}},
				"required":   []string{"command"},
			},
		}},
		"messages": []any{map[string]any{
			"role": "user",
			"content": []any{
				map[string]any{"type": "text", "text": markers},
				map[string]any{"type": "text", "text": strings.Repeat("a ", 30)},
			},
		}},
	}
	b, err := json.Marshal(body)
	if err != nil {
		panic(err) // a literal map always marshals
	}
	return b
}
