package relay

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/tollgate/tollgate/internal/schedule"
)

const providerOpenAI = "openai"

// openAIChat is POST /v1/chat/completions.
var openAIChat = protocol{
	provider:      providerOpenAI,
	endpoint:      "chat",
	billable:      true,
	writeError:    openAIError,
	streamError:   chatStreamError,
	newTap:        func() tap { return &chatTap{} },
	bodyUsage:     chatBodyUsage,
	setCredential: setOpenAICredential,
	prepare:       prepareChat,
	accepts:       func(a *schedule.Account) bool { return a.Kind == "api_key" }, // ChatGPT tokens serve Responses only
}

// openAIResponses is POST /v1/responses (and Codex's /backend-api/codex/responses).
var openAIResponses = protocol{
	provider:      providerOpenAI,
	endpoint:      "responses",
	billable:      true,
	writeError:    openAIError,
	streamError:   responsesStreamError,
	newTap:        func() tap { return &responsesTap{} },
	bodyUsage:     responsesBodyUsage,
	setCredential: setOpenAICredential,
	upstreamURL:   responsesURL,
}

// prepareChat: a streamed chat completion reports usage only in a final chunk the client
// must ask for (stream_options.include_usage). Tollgate needs it to bill, so when the
// client did not ask, Tollgate asks on its behalf and removes what that adds — the usage
// chunk and the "usage":null field of every other chunk — so the client receives the
// stream it asked for. This is one of the two documented body edits (README).
func prepareChat(req *sniffed, body []byte) ([]byte, lineFilter) {
	if !req.Stream {
		return body, nil
	}
	edited, added := req.withStreamUsage(body)
	if !added {
		return body, nil
	}
	var s chatUsageStripper
	return edited, s.filter
}

type chatUsageStripper struct{ dropBlank bool }

var (
	emptyChoices = []byte(`"choices":[]`)
	usageNull    = []byte(`,"usage":null`)
)

func (c *chatUsageStripper) filter(line []byte) []byte {
	trimmed := bytes.TrimRight(line, "\r\n")
	if len(trimmed) == 0 {
		if c.dropBlank {
			c.dropBlank = false
			return nil
		}
		return line
	}
	c.dropBlank = false
	if !bytes.HasPrefix(trimmed, prefixData) {
		return line
	}
	if bytes.Contains(trimmed, emptyChoices) && bytes.Contains(trimmed, usageObjectKey) {
		c.dropBlank = true // and the blank line that ends its event
		return nil
	}
	if i := bytes.Index(line, usageNull); i >= 0 {
		out := make([]byte, 0, len(line)-len(usageNull))
		out = append(out, line[:i]...)
		return append(out, line[i+len(usageNull):]...)
	}
	return line
}

// responsesURL maps the Responses path onto the account: API-key accounts take the
// client's path (/v1/responses) under their base URL; ChatGPT OAuth accounts use the
// Codex backend, whose base URL ends in /backend-api/codex and whose path is /responses.
func responsesURL(acc *schedule.Account, r *http.Request, _ string) string {
	path := r.URL.Path
	if acc.Kind == "oauth" {
		path = "/responses"
	} else if path == "/backend-api/codex/responses" {
		path = "/v1/responses"
	}
	return joinURL(acc.BaseURL, path, r.URL.RawQuery)
}

// setOpenAICredential: API keys and access tokens both go as Bearer tokens; a ChatGPT
// token also names its ChatGPT account, which the Codex backend requires.
func setOpenAICredential(h http.Header, acc *schedule.Account) {
	if acc.Kind == "oauth" {
		h.Set("Authorization", "Bearer "+acc.Credential.AccessToken)
		if id := chatGPTAccountID(acc.Credential.AccessToken); id != "" {
			h.Set("Chatgpt-Account-Id", id)
		}
		return
	}
	h.Set("Authorization", "Bearer "+acc.Credential.APIKey)
	h.Del("Chatgpt-Account-Id")
}

// chatGPTAccountID reads the ChatGPT account id from an access token's claims
// ("https://api.openai.com/auth".chatgpt_account_id). The token is not verified: it is
// our own credential, and the provider verifies it.
func chatGPTAccountID(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Auth struct {
			AccountID string `json:"chatgpt_account_id"`
		} `json:"https://api.openai.com/auth"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	return claims.Auth.AccountID
}

// responsesWebSocket answers Codex's WebSocket upgrade on GET /v1/responses with 426 and
// an empty body, which makes Codex fall back to HTTP at once (a JSON 404 would fail the
// turn). Serving the Responses API over WebSocket is future work.
func responsesWebSocket(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Tollgate-Request-Id", newRequestID())
	w.WriteHeader(http.StatusUpgradeRequired)
}
