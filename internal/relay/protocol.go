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
	newTap     func() tap
	bodyUsage  func(body []byte) (billing.Usage, bool)
	// setCredential puts the account's credential (and headers the provider requires
	// for it) on the upstream request.
	setCredential func(h http.Header, acc *schedule.Account)
}

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
