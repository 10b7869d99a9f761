package relay

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/schedule"
)

const providerAnthropic = "anthropic"

// anthropicMessages is POST /v1/messages.
var anthropicMessages = protocol{
	provider:      providerAnthropic,
	endpoint:      "messages",
	billable:      true,
	writeError:    anthropicError,
	streamError:   anthropicStreamError,
	newTap:        func() tap { return &anthropicTap{} },
	bodyUsage:     anthropicBodyUsage,
	setCredential: setAnthropicCredential,
}

// anthropicCountTokens is POST /v1/messages/count_tokens: routed to an account like a
// message (it needs a credential and counts against concurrency) but never billed.
var anthropicCountTokens = protocol{
	provider:      providerAnthropic,
	endpoint:      "count_tokens",
	writeError:    anthropicError,
	newTap:        func() tap { return &anthropicTap{} },
	bodyUsage:     anthropicBodyUsage,
	setCredential: setAnthropicCredential,
}

// setAnthropicCredential puts the account's credential on the upstream request. API keys
// go in x-api-key; OAuth access tokens go in Authorization with the beta Anthropic
// requires for them, merged with the client's own betas. Nothing else is altered.
func setAnthropicCredential(h http.Header, acc *schedule.Account) {
	if acc.Kind == "oauth" {
		h.Set("Authorization", "Bearer "+acc.Credential.AccessToken)
		h.Set("Anthropic-Beta", mergeBeta(h.Values("Anthropic-Beta"), "oauth-2025-04-20"))
		return
	}
	h.Set("X-Api-Key", acc.Credential.APIKey)
}

// mergeBeta returns the comma-separated beta list with want added once.
func mergeBeta(have []string, want string) string {
	var parts []string
	for _, v := range have {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" && p != want {
				parts = append(parts, p)
			}
		}
	}
	return strings.Join(append(parts, want), ",")
}

// modelsFor is what a key may use: its allow-list, else its group's accounts'
// allow-lists, else every priced model of the provider.
func (s *Server) modelsFor(keyModels []string, groupID int64, provider string) []string {
	if len(keyModels) > 0 {
		return keyModels
	}
	if ids := s.cfg.Accounts.Models(groupID, provider); ids != nil {
		return ids
	}
	return s.cfg.Pricing.Models(provider)
}

// models answers GET /v1/models with the models the key may use, without asking any
// upstream: the key's allow-list, else its group's accounts' allow-lists, else every
// priced model. The shape follows the caller: Anthropic's when it sent
// anthropic-version or x-api-key, OpenAI's otherwise.
func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	rid := newRequestID()
	w.Header().Set("X-Tollgate-Request-Id", rid)
	anthropicStyle := r.Header.Get("Anthropic-Version") != "" || r.Header.Get("X-Api-Key") != ""
	p := &anthropicMessages
	if !anthropicStyle {
		p = &openAIProtocolForErrors
	}
	key, status := s.authenticate(w, r, p, rid, time.Now())
	if status != 0 {
		return
	}
	provider := providerAnthropic
	if !anthropicStyle {
		provider = "openai"
	}
	ids := s.modelsFor(key.Models, key.GroupID, provider)
	w.Header().Set("Content-Type", "application/json")
	if anthropicStyle {
		type model struct {
			Type        string `json:"type"`
			ID          string `json:"id"`
			DisplayName string `json:"display_name"`
			CreatedAt   string `json:"created_at"`
		}
		out := struct {
			Data    []model `json:"data"`
			HasMore bool    `json:"has_more"`
			FirstID *string `json:"first_id"`
			LastID  *string `json:"last_id"`
		}{Data: []model{}}
		for _, id := range ids {
			out.Data = append(out.Data, model{Type: "model", ID: id, DisplayName: id, CreatedAt: "2025-01-01T00:00:00Z"})
		}
		if len(ids) > 0 {
			out.FirstID, out.LastID = &ids[0], &ids[len(ids)-1]
		}
		json.NewEncoder(w).Encode(out) //nolint:errcheck
		return
	}
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	out := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, id := range ids {
		out.Data = append(out.Data, model{ID: id, Object: "model", Created: 1735689600, OwnedBy: "tollgate"})
	}
	json.NewEncoder(w).Encode(out) //nolint:errcheck
}
