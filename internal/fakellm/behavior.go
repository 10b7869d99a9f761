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
	// Anthropic shape. ErrorType and ErrorMessage override the type from the status
	// table and the default message.
	Status       int
	ErrorType    string
	ErrorMessage string
	// Headers are added to the response, errors included (retry-after,
	// anthropic-ratelimit-unified-reset, …).
	Headers map[string]string
	// Text replaces the reply text.
	Text string
	// Usage overrides, used when > 0. OutputTokens also pads or truncates the reply
	// text to that many word deltas.
	InputTokens     int
	OutputTokens    int
	CacheCreation5m int
	CacheCreation1h int
	CacheRead       int
	// Delay waits before the response headers; EventDelay between stream events.
	Delay      time.Duration
	EventDelay time.Duration
	// CutAfterEvents > 0 closes the connection abruptly after that many stream events
	// (no cut if the stream has no more events than that); < 0 cuts right after the
	// headers. Non-streaming answers ignore it.
	CutAfterEvents int
	// MidStreamError sends event: error (overloaded_error) after message_start and the
	// first delta, and ends the stream. Non-streaming answers ignore it, which lets a
	// client's non-streaming fallback succeed, as it does against the real API.
	MidStreamError bool
	// ToolUse adds a tool_use block for the first tool of the request, after the text
	// block, with stop_reason tool_use. Without tools in the request it is ignored.
	ToolUse bool
	// Thinking adds a thinking block, with a signature, before the text block.
	Thinking bool
}

// SetScript makes f choose the behaviour of every following request to /v1/messages and
// /v1/messages/count_tokens; nil goes back to the default. f runs concurrently for
// concurrent requests. Fields f leaves zero can still be set by prompt markers.
func (s *Server) SetScript(f func(r *Request) Behavior) {
	if f == nil {
		s.script.Store(nil)
		return
	}
	s.script.Store(&f)
}

// behavior combines the script, if any, with the markers of the request.
func (s *Server) behavior(r *Request, p *parsed) Behavior {
	var b Behavior
	if f := s.script.Load(); f != nil {
		b = (*f)(r)
	}
	p.eachUserText(func(text string) { applyMarkers(&b, text) })
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
