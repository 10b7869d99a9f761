package relay

import "encoding/json"

// A stream Tollgate cannot finish — its upstream stalled (stall.go) or broke off — ends
// with an error event in the protocol's own shape, after what the upstream sent, rather
// than just stopping: a client that saw only an unfinished stream could take a partial
// answer for a whole one, while an error event makes the SDKs raise an error and the
// agents (Claude Code, Codex) try again. The event carries Tollgate's own type, as every
// error Tollgate makes does. Each function appends one whole event to b.

// anthropicStreamError is Anthropic's event: error.
func anthropicStreamError(b []byte, typ, msg string) []byte {
	b = append(b, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"...)
	b = appendJSONString(b, typ)
	b = append(b, ",\"message\":"...)
	b = appendJSONString(b, msg)
	return append(b, "}}\n\n"...)
}

// chatStreamError is the error chunk of an OpenAI Chat Completions stream.
func chatStreamError(b []byte, typ, msg string) []byte {
	b = append(b, "data: {\"error\":{\"message\":"...)
	b = appendJSONString(b, msg)
	b = append(b, ",\"type\":"...)
	b = appendJSONString(b, typ)
	return append(b, ",\"param\":null,\"code\":null}}\n\n"...)
}

// responsesStreamError is the error event of an OpenAI Responses stream.
func responsesStreamError(b []byte, typ, msg string) []byte {
	b = append(b, "event: error\ndata: {\"type\":\"error\",\"code\":"...)
	b = appendJSONString(b, typ)
	b = append(b, ",\"message\":"...)
	b = appendJSONString(b, msg)
	return append(b, ",\"param\":null}\n\n"...)
}

// geminiStreamError is an error object as an event of a Gemini SSE stream (alt=sse).
func geminiStreamError(b []byte, typ, msg string) []byte {
	b = append(b, "data: {\"error\":{\"code\":502,\"message\":"...)
	b = appendJSONString(b, msg)
	b = append(b, ",\"status\":\"UNAVAILABLE\",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\",\"reason\":"...)
	b = appendJSONString(b, typ)
	return append(b, ",\"domain\":\"tollgate\"}]}}\n\n"...)
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}
