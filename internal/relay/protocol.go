package relay

import (
	"net/http"

	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/schedule"
)

// protocol is what differs between wire formats; the relay core (admission, failover,
// streaming, billing) is shared.
type protocol struct {
	provider string
	endpoint string // label for metrics and usage events
	billable bool   // count_tokens and the like are routed but never billed
	// writeError renders Tollgate's own refusal in the protocol's error shape.
	writeError func(w http.ResponseWriter, status int, typ, msg, requestID string)
	// streamError appends the SSE event that ends a stream Tollgate could not finish
	// (stream_errors.go).
	streamError func(b []byte, typ, msg, requestID string) []byte
	newTap      func() tap
	bodyUsage   func(body []byte) (billing.Usage, bool)
	// setCredential puts the account's credential (and headers the provider requires
	// for it) on the upstream request.
	setCredential func(h http.Header, acc *schedule.Account)

	// Optional hooks; nil means the default.

	// request reads the model and the stream flag from the URL (Gemini) instead of the body.
	request func(r *http.Request, req *sniffed) error
	// upstreamURL builds the upstream URL (default: base URL + the client's path and query).
	upstreamURL func(acc *schedule.Account, r *http.Request, upstreamModel string) string
	// prepare makes the protocol's documented body edits and may filter the lines the
	// client receives (e.g. the usage chunk Tollgate asked for on its own behalf).
	prepare func(req *sniffed, body []byte) ([]byte, lineFilter)
	// accepts narrows the candidate accounts (e.g. ChatGPT OAuth accounts serve only
	// the Responses API).
	accepts func(acc *schedule.Account) bool
	// jsonStream: a streaming answer may come as a plain JSON body written piece by
	// piece (Gemini without alt=sse); relay it incrementally, flushing every line.
	jsonStream bool
}

// lineFilter edits one complete line on its way to the client; nil drops it.
type lineFilter func(line []byte) []byte

// tap reads a response stream once, line by line, as it passes to the client.
type tap interface {
	// Line consumes one line including its newline; partial means it continues in the
	// next call. Line(nil, false) at the end of the stream completes a pending line.
	Line(line []byte, partial bool)
	// Usage is what the stream reported so far; ok is false if it reported nothing.
	Usage() (u billing.Usage, ok bool)
	// Finished reports whether the stream ended properly (e.g. message_stop).
	Finished() bool
	// ErrorType is the type of an in-stream error event, if one was seen.
	ErrorType() string
}

// earlyUsage is a tap whose stream reports usage before its end (Anthropic's
// message_start, every chunk of a Gemini SSE stream): the relay checkpoints the first
// report so a proxy that dies mid-stream does not lose the bill (exchange.checkpoint).
type earlyUsage interface {
	// UsageSoFar is what the stream reported up to now; it must not disturb the tap.
	UsageSoFar() (billing.Usage, bool)
}
