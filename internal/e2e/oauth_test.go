package e2e

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate/tollgate/internal/account"
	"github.com/tollgate/tollgate/internal/fakellm"
)

// TestOAuthRefreshOnceAcrossProxies: an OAuth account's access token is refused; two
// proxy processes with concurrent requests redeem the refresh token exactly once, every
// request gets a clean answer, and the upstream sees the Bearer token with the OAuth
// beta merged into the client's betas.
func TestOAuthRefreshOnceAcrossProxies(t *testing.T) {
	s := newStack(t, func(su *setup) {
		su.noDemo = true
		su.accounts = []accountSpec{{name: "oauth-acct", priority: 1,
			oauth: &account.Credential{AccessToken: "stale-access-token", RefreshToken: "rt-initial"}}}
	})
	s.fake.SetCheckAccessTokens(true) // "stale-access-token" was never issued: 401
	s.fake.SetRefreshToken("rt-initial")
	second, _ := s.startProxy(t, "ANTHROPIC_OAUTH_TOKEN_URL="+s.fakeURL+"/v1/oauth/token", "ANTHROPIC_OAUTH_CLIENT_ID=tollgate-test-client")

	seq := s.fake.LastSeq()
	var wg sync.WaitGroup
	for i := range 8 {
		base := s.proxyURL
		if i%2 == 1 {
			base = second
		}
		wg.Go(func() {
			resp, b := rawPost(t, base, s.seeded.DemoKey, smallBody, map[string]string{"Anthropic-Beta": "claude-code-20250219"})
			if resp.StatusCode != 200 || !strings.Contains(string(b), "Hello from fakellm") {
				t.Errorf("request %d: %d %s", i, resp.StatusCode, b)
			}
		})
	}
	wg.Wait()
	if n := s.fake.Refreshes(); n != 1 {
		t.Fatalf("the refresh token was redeemed %d times, want exactly once", n)
	}
	// Not only one success: one token request at all (a proxy that lost the race must
	// not try the spent refresh token too).
	var ok, tokenRequests int
	for _, e := range s.fake.ServedSince(seq) {
		if e.Endpoint == fakellm.EndpointOAuthToken {
			tokenRequests++
		}
		if e.Endpoint != "messages" || e.Status != http.StatusOK {
			continue
		}
		ok++
		auth, beta := e.Header.Get("Authorization"), e.Header.Get("Anthropic-Beta")
		if !strings.HasPrefix(auth, "Bearer ") || auth == "Bearer stale-access-token" || beta != "claude-code-20250219,oauth-2025-04-20" || e.Header.Get("X-Api-Key") != "" {
			t.Fatalf("upstream saw Authorization %q, anthropic-beta %q, x-api-key %q", auth, beta, e.Header.Get("X-Api-Key"))
		}
	}
	if tokenRequests != 1 {
		t.Fatalf("%d token requests reached the provider, want 1", tokenRequests)
	}
	if ok != 8 {
		t.Fatalf("%d answers served, want 8", ok)
	}
	// The account was never put out of rotation.
	var state string
	s.pool.QueryRow(t.Context(), "SELECT state FROM accounts WHERE name = 'oauth-acct'").Scan(&state)
	if state != "active" {
		t.Fatalf("account state %q", state)
	}
}
