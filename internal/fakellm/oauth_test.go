package fakellm

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// refresh posts a refresh grant, as JSON or as a form, and returns the answer.
func (tb *testBundle) refresh(t *testing.T, token string, form bool, wantStatus int) map[string]any {
	t.Helper()
	if form {
		v := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "client_id": {"client-1"}}
		return mustSend(t, tb, v.Encode(), wantStatus, "Content-Type", "application/x-www-form-urlencoded")
	}
	body := `{"grant_type":"refresh_token","refresh_token":` + mustJSON(token) + `,"client_id":"client-1"}`
	return mustSend(t, tb, body, wantStatus)
}

func mustSend(t *testing.T, tb *testBundle, body string, wantStatus int, header ...string) map[string]any {
	t.Helper()
	out, resp := tb.sendJSON(t, "/v1/oauth/token", body, wantStatus, header...)
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("content-type = %q", resp.Header.Get("Content-Type"))
	}
	return out
}

func TestOAuthRotation(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tb.fake.SetRefreshToken("rt-seed")

	first := tb.refresh(t, "rt-seed", false, 200)
	if first["token_type"] != "Bearer" || num(t, first, "expires_in") != 3600 ||
		first["access_token"] == "" || first["refresh_token"] == "" || first["refresh_token"] == "rt-seed" {
		t.Fatalf("first refresh = %v", first)
	}
	// A refresh token works once.
	if out := tb.refresh(t, "rt-seed", false, 400); out["error"] != "invalid_grant" {
		t.Errorf("reused refresh token = %v", out)
	}
	second := tb.refresh(t, first["refresh_token"].(string), true, 200)
	if second["access_token"] == first["access_token"] || second["refresh_token"] == first["refresh_token"] {
		t.Errorf("second refresh did not rotate: %v after %v", second, first)
	}
	if out := tb.refresh(t, first["refresh_token"].(string), true, 400); out["error"] != "invalid_grant" {
		t.Errorf("reused rotated token = %v", out)
	}
	if out := tb.refresh(t, "never-issued", false, 400); out["error"] != "invalid_grant" {
		t.Errorf("unknown token = %v", out)
	}
	if out := mustSend(t, tb, `{"grant_type":"authorization_code","code":"x"}`, 400); out["error"] != "unsupported_grant_type" {
		t.Errorf("other grant = %v", out)
	}
	if n := tb.fake.Refreshes(); n != 2 {
		t.Errorf("Refreshes() = %d, want 2", n)
	}
	served := tb.fake.Served()
	if len(served) != 6 || served[0].Endpoint != EndpointOAuthToken || served[0].Status != 200 || served[1].Status != 400 {
		t.Errorf("served = %+v", served)
	}
}

// A scripted failure of the token endpoint happens before the token is checked, so the
// client can retry with the same refresh token.
func TestOAuthScriptedFailure(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tb.fake.SetRefreshToken("rt-1")
	tb.fake.SetScript(func(r *Request) Behavior {
		if r.Endpoint == EndpointOAuthToken {
			return Behavior{Status: 503}
		}
		return Behavior{}
	})
	if out := tb.refresh(t, "rt-1", false, 503); out["error"] != "temporarily_unavailable" {
		t.Errorf("scripted failure = %v", out)
	}
	tb.fake.SetScript(nil)
	tb.refresh(t, "rt-1", false, 200)
	if n := tb.fake.Refreshes(); n != 1 {
		t.Errorf("Refreshes() = %d", n)
	}
}

func TestAccessTokenChecking(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{CheckAccessTokens: true})
	tb.fake.SetRefreshToken("rt-1")
	issued := tb.refresh(t, "rt-1", false, 200)["access_token"].(string)
	tb.fake.AddAccessToken("seeded-token")

	type call struct {
		path, body string
		wantType   string // the 401's type, or Gemini status
	}
	calls := []call{
		{"/v1/messages", body(false, "hi"), "authentication_error"},
		{"/v1/chat/completions", chatBodyOf(false, false, "hi"), "invalid_request_error"},
		{"/v1/responses", `{"model":"gpt-5","input":"hi"}`, "invalid_request_error"},
		{"/v1beta/models/gemini-2.5-flash:generateContent", geminiBodyOf("hi"), "UNAUTHENTICATED"},
	}
	for _, c := range calls {
		for _, tok := range []string{issued, "seeded-token"} {
			tb.sendJSON(t, c.path, c.body, 200, "Authorization", "Bearer "+tok)
		}
		out, _ := tb.sendJSON(t, c.path, c.body, 401, "Authorization", "Bearer made-up")
		e := out["error"].(map[string]any)
		if e["type"] != c.wantType && e["status"] != c.wantType {
			t.Errorf("%s with an unknown token: %v", c.path, out)
		}
	}
	// Keys sent another way still follow APIKeys (any key here).
	tb.sendJSON(t, "/v1/messages", body(false, "hi"), 200, "X-Api-Key", "sk-any")
	tb.sendJSON(t, "/v1beta/models/gemini-2.5-flash:generateContent", geminiBodyOf("hi"), 200, geminiAuth...)

	tb.fake.RevokeAccessToken(issued)
	out, _ := tb.sendJSON(t, "/v1/messages", body(false, "hi"), 401, "Authorization", "Bearer "+issued)
	if msg := out["error"].(map[string]any)["message"]; msg != "Invalid bearer token" {
		t.Errorf("revoked token: %v", out)
	}

	// Turned off, any Bearer token is accepted again.
	tb.fake.SetCheckAccessTokens(false)
	tb.sendJSON(t, "/v1/messages", body(false, "hi"), 200, "Authorization", "Bearer made-up")
}

func TestAccessTokenExpiry(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{CheckAccessTokens: true, AccessTokenTTL: 50 * time.Millisecond})
	tb.fake.SetRefreshToken("rt-1")
	issued := tb.refresh(t, "rt-1", true, 200)
	if num(t, issued, "expires_in") != 1 { // rounded up
		t.Errorf("expires_in = %v", issued["expires_in"])
	}
	tok := issued["access_token"].(string)
	tb.sendJSON(t, "/v1/messages", body(false, "hi"), 200, "Authorization", "Bearer "+tok)
	time.Sleep(60 * time.Millisecond)
	out, _ := tb.sendJSON(t, "/v1/messages", body(false, "hi"), 401, "Authorization", "Bearer "+tok)
	if msg := out["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "expired") {
		t.Errorf("expired token: %v", out)
	}
	out, _ = tb.sendJSON(t, "/v1/chat/completions", chatBodyOf(false, false, "hi"), 401, "Authorization", "Bearer "+tok)
	if code := out["error"].(map[string]any)["code"]; code != "token_expired" {
		t.Errorf("expired token on chat: %v", out)
	}
}

// Every entry says which provider and endpoint served it.
func TestServedProviderAndEndpoint(t *testing.T) {
	t.Parallel()
	tb := setup(t, Options{})
	tb.fake.SetRefreshToken("rt-1")
	anthropic := []string{"X-Api-Key", "sk-test"}
	tests := []struct {
		path, body   string
		header       []string
		provider, ep string
	}{
		{"/v1/messages", body(false, "hi"), anthropic, ProviderAnthropic, EndpointMessages},
		{"/v1/messages/count_tokens", body(false, "hi"), anthropic, ProviderAnthropic, EndpointCountTokens},
		{"/v1/chat/completions", chatBodyOf(false, false, "hi"), openAIAuth, ProviderOpenAI, EndpointChat},
		{"/v1/responses", `{"model":"gpt-5","input":"hi"}`, openAIAuth, ProviderOpenAI, EndpointResponses},
		{"/backend-api/codex/responses", `{"model":"gpt-5","input":"hi"}`, openAIAuth, ProviderOpenAI, EndpointResponses},
		{"/v1beta/models/gemini-2.5-flash:generateContent", geminiBodyOf("hi"), geminiAuth, ProviderGemini, EndpointGeminiGenerate},
		{"/v1beta/models/gemini-2.5-flash:countTokens", geminiBodyOf("hi"), geminiAuth, ProviderGemini, EndpointGeminiCount},
		{"/v1/oauth/token", `{"grant_type":"refresh_token","refresh_token":"rt-1"}`, nil, ProviderAnthropic, EndpointOAuthToken},
	}
	for _, tt := range tests {
		since := tb.fake.LastSeq()
		tb.sendJSON(t, tt.path, tt.body, http.StatusOK, tt.header...)
		got := tb.fake.ServedSince(since)
		if len(got) != 1 || got[0].Provider != tt.provider || got[0].Endpoint != tt.ep || got[0].Path != tt.path {
			t.Errorf("%s: served = %+v", tt.path, got)
		}
	}
}
