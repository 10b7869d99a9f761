package fakellm

import (
	"strconv"
	"strings"
	"time"
)

// Behavior says how to answer one request. The zero value is a normal answer; a field
// that is zero leaves that part of the answer as the formulas make it.
type Behavior struct {
	// Status, when neither 0 nor 200, answers with an error of that status in the
	// dialect's shape. ErrorType overrides the Anthropic error type, the OpenAI error
	// type or the Gemini status (RESOURCE_EXHAUSTED, …) that the status implies;
	// ErrorMessage the default message. ErrorCode is the OpenAI error code (a 429 has
	// rate_limit_exceeded by default; insufficient_quota, usage_limit_reached, …); a
	// usage_limit_reached error also gets type usage_limit_reached, plan_type,
	// resets_in_seconds and resets_at, as Codex's ChatGPT backend sends them. The three
	// also shape the error a MidStreamError sends.
	Status       int
	ErrorType    string
	ErrorMessage string
	ErrorCode    string
	// Headers are added to the response, errors included (retry-after,
	// anthropic-ratelimit-unified-reset, x-ratelimit-remaining-tokens, …). They win
	// over the headers the fake sets itself.
	Headers map[string]string
	// Text replaces the reply text.
	Text string
	// Usage overrides, used when > 0, with the meaning of the Usage fields: InputTokens
	// excludes cached tokens in every dialect, and OutputTokens includes reasoning
	// tokens in OpenAI and Gemini answers. OutputTokens also pads or truncates the reply
	// text to that many word deltas. CacheRead is what OpenAI and Gemini report as
	// cached (they have no cache writes, so they ignore CacheCreation5m and 1h).
	InputTokens     int
	OutputTokens    int
	CacheCreation5m int
	CacheCreation1h int
	CacheRead       int
	// ReasoningTokens, when > 0, is the reasoning count of an OpenAI or Gemini answer,
	// Thinking or not. Anthropic ignores it: its thinking is counted from the deltas.
	ReasoningTokens int
	// Delay waits before the response headers; EventDelay between stream events.
	Delay      time.Duration
	EventDelay time.Duration
	// CutAfterEvents > 0 closes the connection abruptly after that many stream events
	// (no cut if the stream has no more events than that); < 0 cuts right after the
	// headers. Non-streaming answers ignore it.
	CutAfterEvents int
	// MidStreamError ends a stream with an error right after its first delta:
	// Anthropic's event: error (overloaded_error), a Chat Completions data line with an
	// "error" object (server_error), Responses' response.failed (server_error), a
	// Gemini error object (UNAVAILABLE). Non-streaming answers ignore it, which lets a
	// client's non-streaming fallback succeed, as it does against the real API.
	MidStreamError bool
	// ToolUse adds a call of the first tool of the request (the first function tool in
	// OpenAI and Gemini requests) after the text, with stop_reason tool_use,
	// finish_reason tool_calls, a function_call item or a functionCall part. Without
	// tools in the request it is ignored.
	ToolUse bool
	// Thinking adds a thinking block, with a signature, before the text block. OpenAI
	// and Gemini answers report its words as reasoning tokens; Responses adds a
	// reasoning item (with the text as its summary when the request asks for one) and
	// Gemini adds thought parts when includeThoughts is set.
	Thinking bool
}

// SetScript makes f choose the behaviour of every following request to a model endpoint
// of any dialect, and of the OAuth token endpoint (Status, Error*, Headers and Delay
// apply there); nil goes back to the default. Request.Endpoint tells them apart. f runs
// concurrently for concurrent requests. Fields f leaves zero can still be set by prompt
// markers.
func (s *Server) SetScript(f func(r *Request) Behavior) {
	if f == nil {
		s.script.Store(nil)
		return
	}
	s.script.Store(&f)
}

// userTexts gives the texts of a request's last user turn, where markers are looked
// for: userText(i) is the i-th, and false past the last. (An indexed getter, not a
// callback, so that the Behavior being built stays on the stack.)
type userTexts interface {
	userText(i int) (string, bool)
}

// behavior combines the script, if any, with the markers in texts (nil: none).
func (s *Server) behavior(r *Request, texts userTexts) Behavior {
	var b Behavior
	if f := s.script.Load(); f != nil {
		b = (*f)(r)
	}
	if texts != nil {
		for i := 0; ; i++ {
			text, ok := texts.userText(i)
			if !ok {
				break
			}
			applyMarkers(&b, text)
		}
	}
	return b
}

// applyMarkers sets the fields that markers in text ask for and b leaves zero.
func applyMarkers(b *Behavior, text string) {
	for {
		i := strings.Index(text, "FAKE_")
		if i < 0 {
			return
		}
		text = text[i+len("FAKE_"):]
		switch {
		case strings.HasPrefix(text, "ERROR_"):
			n, ok := leadingInt(text[len("ERROR_"):])
			if ok && n >= 400 && n <= 599 && b.Status == 0 {
				b.Status = n
				if n == 429 && b.Headers == nil {
					b.Headers = map[string]string{"retry-after": "1"}
				}
			}
		case strings.HasPrefix(text, "MIDSTREAM_ERROR"):
			b.MidStreamError = true
		case strings.HasPrefix(text, "TOOL_CALL"):
			b.ToolUse = true
		case strings.HasPrefix(text, "THINKING"):
			b.Thinking = true
		case strings.HasPrefix(text, "SLOW_"):
			n, ok := leadingInt(text[len("SLOW_"):])
			if ok && b.EventDelay == 0 {
				b.EventDelay = time.Duration(n) * time.Millisecond
			}
		case strings.HasPrefix(text, "CUT_"):
			n, ok := leadingInt(text[len("CUT_"):])
			if ok && b.CutAfterEvents == 0 {
				b.CutAfterEvents = n
				if n == 0 {
					b.CutAfterEvents = -1
				}
			}
		}
	}
}

// leadingInt parses the decimal digits at the start of s, up to 9 of them.
func leadingInt(s string) (int, bool) {
	end := 0
	for end < len(s) && end < 9 && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	if end == 0 {
		return 0, false
	}
	n, err := strconv.Atoi(s[:end])
	return n, err == nil
}
