package fakellm

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// The rate limits the OpenAI headers report. Only a 429 runs out of them.
const (
	openAIRequestLimit = 10000
	openAITokenLimit   = 2000000
)

var openAIDialect = dialect{
	provider:   ProviderOpenAI,
	credential: openAICredential,
	authError:  openAIAuthError,
	writeError: writeOpenAIError,
	headers:    openAIHeaders,
}

func openAIAuthError(res authResult) apiError {
	ae := apiError{status: http.StatusUnauthorized, typ: "invalid_request_error"}
	switch res {
	case authMissing:
		ae.message = "You didn't provide an API key. You need to provide your API key in an Authorization header " +
			"using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
	case authExpiredToken:
		ae.code = "token_expired"
		ae.message = "Provided authentication token is expired. Please try signing in again."
	case authBadToken:
		ae.code = "invalid_api_key"
		ae.message = "Your authentication token is not valid. Please try signing in again."
	default:
		ae.code = "invalid_api_key"
		ae.message = "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
	}
	return ae
}

// openAIHeaders sets the headers every OpenAI answer carries: the request id and the
// rate limits, which a 429 reports as exhausted.
func openAIHeaders(h http.Header, x *exchange, status int) {
	h.Set("X-Request-Id", x.e.RequestID)
	h.Set("Openai-Version", "2020-10-01")
	h.Set("Openai-Processing-Ms", "1")
	remainingRequests := int64(openAIRequestLimit - 1)
	remainingTokens := max(openAITokenLimit-x.inputTokens, 0)
	resetRequests, resetTokens := "6ms", "0s"
	if status == http.StatusTooManyRequests {
		remainingRequests, remainingTokens = 0, 0
		resetRequests, resetTokens = "1s", "1s"
	}
	h.Set("X-Ratelimit-Limit-Requests", strconv.Itoa(openAIRequestLimit))
	h.Set("X-Ratelimit-Limit-Tokens", strconv.Itoa(openAITokenLimit))
	h.Set("X-Ratelimit-Remaining-Requests", strconv.FormatInt(remainingRequests, 10))
	h.Set("X-Ratelimit-Remaining-Tokens", strconv.FormatInt(remainingTokens, 10))
	h.Set("X-Ratelimit-Reset-Requests", resetRequests)
	h.Set("X-Ratelimit-Reset-Tokens", resetTokens)
}

// usageLimitResetSeconds is when a usage_limit_reached error says the limit resets,
// unless the answer has a Retry-After.
const usageLimitResetSeconds = 3600

// writeOpenAIError answers with {"error":{"message","type","param","code"}}. A 429 gets
// the code rate_limit_exceeded unless ae has one, and a message that says when to try
// again (Codex reads the delay from it) from the Retry-After header, 1s without one.
// A usage_limit_reached error is shaped like Codex's ChatGPT backend's: its type is the
// code too, and it has plan_type, resets_in_seconds (Retry-After, or an hour) and
// resets_at.
func writeOpenAIError(w http.ResponseWriter, requestID string, ae *apiError) error {
	h := w.Header()
	h.Set("X-Request-Id", requestID)
	code := ae.code
	if code == "" && ae.status == http.StatusTooManyRequests {
		code = "rate_limit_exceeded"
	}
	typ := ae.typ
	if typ == "" {
		typ = openAIErrorType(ae.status, code)
	}
	message := ae.message
	if message == "" {
		message = openAIErrorMessage(ae.status, code, retryAfter(h, 1))
	}
	b := append(make([]byte, 0, 256), `{"error":{"message":`...)
	b = appendString(b, message)
	b = append(b, `,"type":`...)
	b = appendString(b, typ)
	b = append(b, `,"param":`...)
	b = appendStringOrNull(b, ae.param)
	b = append(b, `,"code":`...)
	b = appendStringOrNull(b, code)
	if code == "usage_limit_reached" {
		resetsIn := retryAfter(h, usageLimitResetSeconds)
		b = append(b, `,"plan_type":"plus",`...)
		b = appendField(b, "resets_in_seconds", resetsIn)
		b = append(b, ',')
		b = appendField(b, "resets_at", time.Now().Unix()+resetsIn)
	}
	return writeErrorBody(w, ae.status, append(b, "}}"...))
}

func openAIErrorType(status int, code string) string {
	switch code {
	case "insufficient_quota", "usage_limit_reached", "usage_not_included":
		return code
	}
	switch {
	case status == http.StatusTooManyRequests:
		return "requests"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

func openAIErrorMessage(status int, code string, retry int64) string {
	switch code {
	case "rate_limit_exceeded":
		return "Rate limit reached for requests per min (RPM) (fakellm): Limit " + strconv.Itoa(openAIRequestLimit) +
			", Used " + strconv.Itoa(openAIRequestLimit) + ", Requested 1. Please try again in " +
			strconv.FormatInt(retry, 10) + "s."
	case "insufficient_quota":
		return "You exceeded your current quota, please check your plan and billing details. (fakellm)"
	case "usage_limit_reached":
		return "The usage limit has been reached"
	case "usage_not_included":
		return "Your plan does not include this usage (fakellm)"
	}
	switch status {
	case http.StatusUnauthorized:
		return "Incorrect API key provided (fakellm)."
	case http.StatusInternalServerError:
		return "The server had an error while processing your request. Sorry about that!"
	case http.StatusServiceUnavailable, 529:
		return "The engine is currently overloaded, please try again later."
	}
	return statusMessage(status)
}

func appendStringOrNull(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendString(b, s)
}

// openAIParseError is the answer to a body the decoder rejected.
func openAIParseError(body []byte, err error) apiError {
	if !json.Valid(body) {
		return apiError{status: http.StatusBadRequest, message: "We could not parse the JSON body of your request. " +
			"(HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, " +
			"but what was sent was not valid JSON.)"}
	}
	return apiError{status: http.StatusBadRequest, message: "Invalid request body (fakellm): " + err.Error()}
}

// missingParam is the answer to a request without a required parameter.
func missingParam(name string) apiError {
	return apiError{status: http.StatusBadRequest, param: name, code: "missing_required_parameter",
		message: "Missing required parameter: '" + name + "'."}
}

// midStreamFailure is the error a MidStreamError sends in an OpenAI stream.
func midStreamFailure(b *Behavior) apiError {
	ae := apiError{status: http.StatusInternalServerError, typ: b.ErrorType, code: b.ErrorCode, message: b.ErrorMessage}
	if ae.typ == "" {
		ae.typ = "server_error"
	}
	if ae.code == "" {
		ae.code = "server_error"
	}
	if ae.message == "" {
		ae.message = "An error occurred while processing your request. You can retry your request, " +
			"or contact us through our help center at help.openai.com if the error persists. (fakellm)"
	}
	return ae
}

// chatTool returns the first function tool of a Chat Completions request, or nil.
func chatTool(raw json.RawMessage) *toolSpec {
	var t struct {
		Type     string `json:"type"`
		Function struct {
			Name       string     `json:"name"`
			Parameters toolSchema `json:"parameters"`
		} `json:"function"`
	}
	if !firstTool(raw, func(one json.RawMessage) bool {
		t.Type, t.Function.Name, t.Function.Parameters = "", "", toolSchema{}
		return json.Unmarshal(one, &t) == nil && (t.Type == "" || t.Type == "function") && t.Function.Name != ""
	}) {
		return nil
	}
	return &toolSpec{name: t.Function.Name, schema: t.Function.Parameters}
}

// responsesTool returns the first function tool of a Responses request, or nil. Codex
// sends namespaces and web_search too; they are skipped.
func responsesTool(raw json.RawMessage) *toolSpec {
	var t struct {
		Type       string     `json:"type"`
		Name       string     `json:"name"`
		Parameters toolSchema `json:"parameters"`
	}
	if !firstTool(raw, func(one json.RawMessage) bool {
		t.Type, t.Name, t.Parameters = "", "", toolSchema{}
		return json.Unmarshal(one, &t) == nil && t.Type == "function" && t.Name != ""
	}) {
		return nil
	}
	return &toolSpec{name: t.Name, schema: t.Parameters}
}

// appendChatUsage appends a Chat Completions usage object.
func appendChatUsage(b []byte, u Usage) []byte {
	prompt := u.InputTokens + u.CacheRead
	b = append(b, '{')
	b = appendField(b, "prompt_tokens", prompt)
	b = append(b, ',')
	b = appendField(b, "completion_tokens", u.OutputTokens)
	b = append(b, ',')
	b = appendField(b, "total_tokens", prompt+u.OutputTokens)
	b = append(b, `,"prompt_tokens_details":{`...)
	b = appendField(b, "cached_tokens", u.CacheRead)
	b = append(b, `,"audio_tokens":0},"completion_tokens_details":{`...)
	b = appendField(b, "reasoning_tokens", u.Reasoning)
	return append(b, `,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`...)
}

// appendResponsesUsage appends a Responses usage object.
func appendResponsesUsage(b []byte, u Usage) []byte {
	input := u.InputTokens + u.CacheRead
	b = append(b, '{')
	b = appendField(b, "input_tokens", input)
	b = append(b, `,"input_tokens_details":{`...)
	b = appendField(b, "cached_tokens", u.CacheRead)
	b = append(b, "},"...)
	b = appendField(b, "output_tokens", u.OutputTokens)
	b = append(b, `,"output_tokens_details":{`...)
	b = appendField(b, "reasoning_tokens", u.Reasoning)
	b = append(b, "},"...)
	b = appendField(b, "total_tokens", input+u.OutputTokens)
	return append(b, '}')
}
