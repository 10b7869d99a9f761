package fakellm

import (
	"net/http"
	"strconv"
)

// errorType maps a status to the Anthropic error type, as the real API does.
func errorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusPaymentRequired:
		return "billing_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusInternalServerError:
		return "api_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	case 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

func errorMessage(status int) string {
	switch status {
	case 529:
		return "Overloaded"
	case http.StatusTooManyRequests:
		return "Number of requests has exceeded your rate limit (fakellm)"
	case http.StatusUnauthorized:
		return "invalid x-api-key"
	}
	return statusMessage(status)
}

// statusMessage is the default message of an error status no dialect words its own way.
func statusMessage(status int) string {
	if text := http.StatusText(status); text != "" {
		return text + " (fakellm)"
	}
	return "Error " + strconv.Itoa(status) + " (fakellm)"
}

// appendErrorBody appends {"type":"error","error":{…},"request_id":…}. Empty errType
// and message take the defaults for status.
func appendErrorBody(b []byte, requestID string, status int, errType, message string) []byte {
	if errType == "" {
		errType = errorType(status)
	}
	if message == "" {
		message = errorMessage(status)
	}
	b = append(b, `{"type":"error","error":{"type":`...)
	b = appendString(b, errType)
	b = append(b, `,"message":`...)
	b = appendString(b, message)
	b = append(b, `},"request_id":`...)
	b = appendString(b, requestID)
	return append(b, '}')
}

var anthropicDialect = dialect{
	provider:   ProviderAnthropic,
	credential: anthropicCredential,
	authError:  anthropicAuthError,
	writeError: writeAnthropicError,
}

func anthropicAuthError(res authResult) apiError {
	ae := apiError{status: http.StatusUnauthorized}
	switch res {
	case authMissing:
		ae.message = "x-api-key header is required"
	case authBadToken:
		ae.message = "Invalid bearer token"
	case authExpiredToken:
		ae.message = "OAuth token has expired. Please obtain a new token or refresh your existing token."
	default:
		ae.message = "invalid x-api-key"
	}
	return ae
}

// writeAnthropicError answers with an Anthropic error. The request-id header is set
// here too, so every error path carries it.
func writeAnthropicError(w http.ResponseWriter, requestID string, ae *apiError) error {
	w.Header().Set("Request-Id", requestID)
	return writeErrorBody(w, ae.status, appendErrorBody(make([]byte, 0, 160), requestID, ae.status, ae.typ, ae.message))
}

// writeError answers with an Anthropic error, for the routes outside an exchange.
func (s *Server) writeError(w http.ResponseWriter, requestID string, status int, errType, message string) error {
	return writeAnthropicError(w, requestID, &apiError{status: status, typ: errType, message: message})
}

// writeErrorBody writes a JSON error body with its status.
func writeErrorBody(w http.ResponseWriter, status int, body []byte) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, err := w.Write(body)
	return err
}
