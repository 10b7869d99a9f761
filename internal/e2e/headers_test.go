package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/fakellm"
)

func TestHeadersBodyLimitAndMetrics(t *testing.T) {
	s := newStack(t)
	s.fake.SetScript(func(r *fakellm.Request) fakellm.Behavior {
		return fakellm.Behavior{Headers: map[string]string{
			"anthropic-ratelimit-requests-remaining": "42",
			"anthropic-organization-id":              "org-secret",
			"x-upstream-internal":                    "leak",
		}}
	})

	t.Run("forwarded and filtered", func(t *testing.T) {
		seq := s.fake.LastSeq()
		req, _ := http.NewRequest(http.MethodPost, s.proxyURL+"/v1/messages?beta=true", strings.NewReader(smallBody))
		req.Header.Set("Authorization", "Bearer "+s.seeded.DemoKey)
		req.Header.Set("Anthropic-Version", "2026-10-21")
		req.Header.Set("Anthropic-Beta", "claude-code-20250219,context-1m-2025-08-07")
		req.Header.Set("Connection", "keep-alive, X-Hop")
		req.Header.Set("X-Hop", "per-connection")
		req.Header.Set("X-Forwarded-For", "10.0.0.1")
		req.Header.Set("Cookie", "session=1")
		req.Header.Set("X-Stainless-Lang", "js")
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		up := s.fake.ServedSince(seq)[0]
		if up.Path != "/v1/messages" || up.Header.Get("Anthropic-Version") != "2026-10-21" ||
			up.Header.Get("Anthropic-Beta") != "claude-code-20250219,context-1m-2025-08-07" || up.Header.Get("X-Stainless-Lang") != "js" {
			t.Fatalf("client headers not forwarded as received: %v", up.Header)
		}
		for _, h := range []string{"Authorization", "X-Hop", "X-Forwarded-For", "Cookie"} {
			if v := up.Header.Get(h); v != "" {
				t.Errorf("upstream received %s: %q", h, v)
			}
		}
		if up.Header.Get("X-Api-Key") != "sk-ant-fakellm-demo" {
			t.Errorf("upstream credential %q", up.Header.Get("X-Api-Key"))
		}
		for _, h := range []string{"Anthropic-Ratelimit-Requests-Remaining", "Anthropic-Organization-Id", "X-Upstream-Internal"} {
			if v := resp.Header.Get(h); v != "" {
				t.Errorf("client received upstream header %s: %q", h, v)
			}
		}
		if resp.Header.Get("X-Tollgate-Request-Id") == "" || resp.Header.Get("Request-Id") == "" {
			t.Errorf("missing request ids: %v", resp.Header)
		}
	})

	t.Run("key in the query string", func(t *testing.T) {
		status, body := s.post(t, "", smallBody) // no header key…
		if status != 401 {
			t.Fatalf("no key: %d", status)
		}
		req, _ := http.NewRequest(http.MethodPost, s.proxyURL+"/v1/messages?key="+s.seeded.DemoKey, strings.NewReader(smallBody))
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), "not accepted in the URL") {
			t.Fatalf("key in URL: %d %s (%+v)", resp.StatusCode, b, body)
		}
	})

	t.Run("body too large", func(t *testing.T) {
		big := `{"model":"` + model + `","messages":[{"role":"user","content":"` + strings.Repeat("a", 33<<20) + `"}]}`
		status, body := s.post(t, s.seeded.DemoKey, big)
		if status != 413 || body.Error.Type != "tollgate_request_too_large" {
			t.Fatalf("status %d %+v", status, body)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		resp, err := httpClient.Get(s.proxyURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, m := range []string{`tollgate_requests_total{code="200",endpoint="messages"}`, "tollgate_upstream_ttfb_seconds",
			"tollgate_upstream_responses_total", "tollgate_active_streams", "tollgate_admission_wait_seconds", "go_goroutines"} {
			if !strings.Contains(string(b), m) {
				t.Errorf("metrics lack %s", m)
			}
		}
	})
}
