package relay

import (
	"bytes"
	"encoding/json"

	"github.com/tollgate/tollgate/internal/billing"
)

// openAIUsage is Chat Completions' usage object. prompt_tokens includes cached tokens;
// completion_tokens includes reasoning tokens (both billed at their class's rate).
type openAIUsage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails *struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"completion_tokens_details"`
}

func (o *openAIUsage) usage() billing.Usage {
	u := billing.Usage{Input: o.PromptTokens, Output: o.CompletionTokens}
	if o.PromptTokensDetails != nil {
		u.CacheRead = min(o.PromptTokensDetails.CachedTokens, o.PromptTokens)
		u.Input -= u.CacheRead
	}
	if o.CompletionTokensDetails != nil {
		u.Reasoning = o.CompletionTokensDetails.ReasoningTokens
	}
	return u
}

// chatTap reads a Chat Completions stream: data lines only, ending with [DONE]; usage
// arrives in the last chunk (empty choices) when stream_options.include_usage is set —
// which Tollgate sets itself when the client did not (see chatStreamEditor).
type chatTap struct {
	usage     billing.Usage
	sawUsage  bool
	done      bool
	errorType string
	pending   []byte
}

var (
	dataDone       = []byte("[DONE]")
	usageObjectKey = []byte(`"usage":{`)
	errorKey       = []byte(`"error":`)
)

func (t *chatTap) Line(line []byte, partial bool) {
	line, ok := assemble(&t.pending, line, partial)
	if !ok {
		return
	}
	line = bytes.TrimRight(line, "\r\n")
	if !bytes.HasPrefix(line, prefixData) {
		return
	}
	d := bytes.TrimSpace(line[len(prefixData):])
	switch {
	case bytes.Equal(d, dataDone):
		t.done = true
	case bytes.Contains(d, usageObjectKey):
		var m struct {
			Usage *openAIUsage `json:"usage"`
		}
		if json.Unmarshal(d, &m) == nil && m.Usage != nil {
			t.usage, t.sawUsage = m.Usage.usage(), true
		}
	case bytes.Contains(d, errorKey):
		t.errorType = jsonErrorType(d)
	}
}

func (t *chatTap) Usage() (billing.Usage, bool) { return t.usage, t.sawUsage }
func (t *chatTap) Finished() bool               { return t.done }
func (t *chatTap) ErrorType() string            { return t.errorType }

// chatBodyUsage reads a non-streaming chat.completion's usage.
func chatBodyUsage(body []byte) (billing.Usage, bool) {
	var u openAIUsage
	if !decodeMember(body, "usage", &u) {
		return billing.Usage{}, false
	}
	return u.usage(), true
}

// responsesUsage is the Responses API's usage object.
type responsesUsage struct {
	InputTokens        int64 `json:"input_tokens"`
	OutputTokens       int64 `json:"output_tokens"`
	InputTokensDetails *struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokensDetails *struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
}

func (r *responsesUsage) usage() billing.Usage {
	u := billing.Usage{Input: r.InputTokens, Output: r.OutputTokens}
	if r.InputTokensDetails != nil {
		u.CacheRead = min(r.InputTokensDetails.CachedTokens, r.InputTokens)
		u.Input -= u.CacheRead
	}
	if r.OutputTokensDetails != nil {
		u.Reasoning = r.OutputTokensDetails.ReasoningTokens
	}
	return u
}

// responsesTap reads a Responses stream. Usage comes with the terminal event
// (response.completed, response.incomplete, or response.failed).
type responsesTap struct {
	event     []byte
	usage     billing.Usage
	sawUsage  bool
	done      bool
	errorType string
	pending   []byte
}

func (t *responsesTap) Line(line []byte, partial bool) {
	line, ok := assemble(&t.pending, line, partial)
	if !ok {
		return
	}
	line = bytes.TrimRight(line, "\r\n")
	switch {
	case len(line) == 0:
		t.event = t.event[:0]
	case bytes.HasPrefix(line, prefixEvent):
		t.event = append(t.event[:0], bytes.TrimSpace(line[len(prefixEvent):])...)
	case bytes.HasPrefix(line, prefixData):
		d := bytes.TrimSpace(line[len(prefixData):])
		name := string(t.event)
		if name == "" {
			name = peekType(d)
		}
		switch name {
		case "response.completed", "response.incomplete", "response.failed":
			var m struct {
				Response struct {
					Usage *responsesUsage `json:"usage"`
					Error *struct {
						Code string `json:"code"`
					} `json:"error"`
				} `json:"response"`
			}
			if json.Unmarshal(d, &m) == nil {
				if m.Response.Usage != nil {
					t.usage, t.sawUsage = m.Response.Usage.usage(), true
				}
				if name == "response.failed" {
					t.errorType = "response.failed"
					if m.Response.Error != nil && m.Response.Error.Code != "" {
						t.errorType = m.Response.Error.Code
					}
				}
			}
			t.done = name != "response.failed"
		case "error":
			t.errorType = jsonErrorType(d)
		}
	}
}

func (t *responsesTap) Usage() (billing.Usage, bool) { return t.usage, t.sawUsage }
func (t *responsesTap) Finished() bool               { return t.done }
func (t *responsesTap) ErrorType() string            { return t.errorType }

// responsesBodyUsage reads a non-streaming Response object's usage.
func responsesBodyUsage(body []byte) (billing.Usage, bool) {
	var u responsesUsage
	if !decodeMember(body, "usage", &u) {
		return billing.Usage{}, false
	}
	return u.usage(), true
}

// jsonErrorType reads error.type or error.code (or a top-level code) of an error payload.
func jsonErrorType(d []byte) string {
	var m struct {
		Code  string `json:"code"`
		Error *struct {
			Type string `json:"type"`
			Code any    `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal(d, &m) //nolint:errcheck // best effort: the class is informational
	switch {
	case m.Error != nil && m.Error.Type != "":
		return m.Error.Type
	case m.Error != nil:
		if c, ok := m.Error.Code.(string); ok && c != "" {
			return c
		}
	case m.Code != "":
		return m.Code
	}
	return "error"
}

// assemble joins a line split across reads. It returns false while the line is
// incomplete; Line(nil, false) flushes what is pending.
func assemble(pending *[]byte, line []byte, partial bool) ([]byte, bool) {
	if partial || len(*pending) > 0 {
		*pending = append(*pending, line...)
		if partial {
			return nil, false
		}
		line, *pending = *pending, nil
	}
	return line, true
}
