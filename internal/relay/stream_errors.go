package relay

import "encoding/json"

// A stream Tollgate cannot finish — its upstream stalled (stall.go) or broke off — ends
// with an error event in the protocol's own shape, after what the upstream sent, rather
// than just stopping: a client that saw only an unfinished stream could take a partial
// answer for a whole one, while an error event makes the SDKs raise an error and the
// agents (Claude Code, Codex) try again. The event carries Tollgate's own type, as every
// error Tollgate makes does, and the error body of the protocol's refusals where the
// protocol streams errors in that shape. Each function appends one whole event to b.

func anthropicStreamError(b []byte, typ, msg, requestID string) []byte {
	return appendSSE(b, "error", anthropicErrorBody(typ, msg, requestID))
}

// chatStreamError is a Chat Completions chunk holding an error object.
func chatStreamError(b []byte, typ, msg, _ string) []byte {
	return appendSSE(b, "", openAIErrorBody(typ, msg))
}

// responsesStreamError is the Responses API's error event, a shape of its own.
func responsesStreamError(b []byte, typ, msg, _ string) []byte {
	body, _ := json.Marshal(map[string]any{"type": "error", "code": typ, "message": msg, "param": nil})
	return appendSSE(b, "error", body)
}

// geminiStreamError is an error object as an event of a Gemini SSE stream (alt=sse).
func geminiStreamError(b []byte, typ, msg, requestID string) []byte {
	return appendSSE(b, "", geminiErrorBody(502, typ, msg, requestID))
}

// appendSSE appends one SSE event: its event line when named, its data line, a blank line.
func appendSSE(b []byte, event string, data []byte) []byte {
	if event != "" {
		b = append(append(append(b, "event: "...), event...), '\n')
	}
	b = append(append(append(b, "data: "...), data...), '\n', '\n')
	return b
}
