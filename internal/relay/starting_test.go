package relay

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestStarting: a proxy that is still starting is alive, not ready, and refuses model
// traffic with a 503 in each protocol's shape that says why and when to retry.
func TestStarting(t *testing.T) {
	h := Starting("waiting for PostgreSQL")
	get := func(method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader("{}")))
		return rec
	}
	if rec := get("GET", "/healthz"); rec.Code != 200 {
		t.Fatalf("/healthz: %d", rec.Code)
	}
	if rec := get("GET", "/readyz"); rec.Code != 503 || !strings.Contains(rec.Body.String(), "waiting for PostgreSQL") {
		t.Fatalf("/readyz: %d %s", rec.Code, rec.Body)
	}
	for path, shape := range map[string]string{
		"/v1/messages":                                  "anthropic",
		"/v1/messages/count_tokens":                     "anthropic",
		"/v1/chat/completions":                          "openai",
		"/v1/responses":                                 "openai",
		"/backend-api/codex/responses":                  "openai",
		"/v1beta/models/gemini-2.5-pro:generateContent": "gemini",
	} {
		rec := get("POST", path)
		if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("%s: %d, Retry-After %q", path, rec.Code, rec.Header().Get("Retry-After"))
		}
		var body struct {
			Type  string
			Error struct {
				Type, Message, Status string
				Details               []struct{ Reason string }
			}
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, rec.Body)
		}
		var typ string
		switch shape {
		case "anthropic":
			if body.Type != "error" {
				t.Fatalf("%s: not Anthropic's shape: %s", path, rec.Body)
			}
			typ = body.Error.Type
		case "openai":
			typ = body.Error.Type
		case "gemini":
			if body.Error.Status != "UNAVAILABLE" || len(body.Error.Details) != 1 {
				t.Fatalf("%s: not Google's shape: %s", path, rec.Body)
			}
			typ = body.Error.Details[0].Reason
		}
		if typ != errUnavailable || !strings.Contains(body.Error.Message, "starting") || !strings.Contains(body.Error.Message, "waiting for PostgreSQL") {
			t.Fatalf("%s: %s", path, rec.Body)
		}
	}
}
