package relay

import (
	"encoding/json"
	"net/http"
)

// Tollgate's own error types. They sit in the provider's error shape so clients parse
// them, but never collide with a provider's types: a client (or a person reading logs)
// can always tell that Tollgate, not the provider, refused.
const (
	errInvalidRequest  = "tollgate_invalid_request"
	errAuthentication  = "tollgate_authentication_error"
	errPermission      = "tollgate_permission_error"
	errTooLarge        = "tollgate_request_too_large"
	errNoUpstream      = "tollgate_no_upstream"
	errUpstreamFailed  = "tollgate_upstream_unreachable"
	errUpstreamTimeout = "tollgate_upstream_timeout"
	errUpstreamCut     = "tollgate_upstream_cut"
	errUpstreamStalled = "tollgate_upstream_stalled"
	errUnavailable     = "tollgate_unavailable"
	errUnpricedModel   = "tollgate_unpriced_model"
	errMethod          = "tollgate_method_not_allowed"
	errNotFound        = "tollgate_not_found"
)

// anthropicError writes {"type":"error","error":{"type":…,"message":…},"request_id":…}.
func anthropicError(w http.ResponseWriter, status int, typ, msg, requestID string) {
	body := anthropicErrorBody(typ, msg, requestID)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Should-Retry", map[bool]string{true: "true", false: "false"}[status == 429 || status >= 500])
	w.WriteHeader(status)
	w.Write(body) //nolint:errcheck
}

func anthropicErrorBody(typ, msg, requestID string) []byte {
	body, _ := json.Marshal(struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
		RequestID string `json:"request_id,omitempty"`
	}{Type: "error", Error: struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}{typ, msg}, RequestID: requestID})
	return body
}
