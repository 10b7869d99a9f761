package fakellm

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// tokenStore holds the OAuth tokens of the token endpoint. Refresh tokens rotate: each
// refresh spends the one it was given and issues a new one, as Anthropic's endpoint
// does, so a client that loses the new token (or two clients that race with the same
// one) finds out.
type tokenStore struct {
	checking atomic.Bool
	ttl      time.Duration

	mu        sync.Mutex
	access    map[string]time.Time // expiry; zero never expires
	refresh   map[string]bool      // true once spent
	refreshes int
	issued    int
}

func newTokenStore(ttl time.Duration, checking bool) *tokenStore {
	if ttl <= 0 {
		ttl = time.Hour
	}
	t := &tokenStore{ttl: ttl, access: map[string]time.Time{}, refresh: map[string]bool{}}
	t.checking.Store(checking)
	return t
}

func (t *tokenStore) checkAccess(tok string) authResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	exp, ok := t.access[tok]
	switch {
	case !ok:
		return authBadToken
	case !exp.IsZero() && time.Now().After(exp):
		return authExpiredToken
	}
	return authOK
}

// rotate spends the refresh token tok and issues a new pair, or reports false if tok
// was never valid or is spent.
func (t *tokenStore) rotate(tok string) (access, refresh string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if spent, known := t.refresh[tok]; !known || spent {
		return "", "", false
	}
	t.refresh[tok] = true
	t.issued++
	n := strconv.Itoa(t.issued)
	// The random parts keep issued tokens apart from any a test seeds.
	access = "sk-ant-oat01-fakellm-" + n + "-" + strings.ToLower(rand.Text()[:12])
	refresh = "sk-ant-ort01-fakellm-" + n + "-" + strings.ToLower(rand.Text()[:12])
	t.access[access] = time.Now().Add(t.ttl)
	t.refresh[refresh] = false
	t.refreshes++
	return access, refresh, true
}

// SetCheckAccessTokens turns access-token checking on or off at run time; see
// Options.CheckAccessTokens.
func (s *Server) SetCheckAccessTokens(on bool) {
	s.tokens.checking.Store(on)
}

// AddAccessToken makes tok a valid access token that never expires, for tests that
// start from a token rather than from a refresh.
func (s *Server) AddAccessToken(tok string) {
	s.tokens.mu.Lock()
	s.tokens.access[tok] = time.Time{}
	s.tokens.mu.Unlock()
}

// RevokeAccessToken makes tok invalid, as a provider does when a user signs out
// elsewhere: with checking on, the next request with it gets a 401, which is how a test
// makes a gateway refresh before the token expires.
func (s *Server) RevokeAccessToken(tok string) {
	s.tokens.mu.Lock()
	delete(s.tokens.access, tok)
	s.tokens.mu.Unlock()
}

// SetRefreshToken makes tok a valid refresh token, usable once. Tokens set before and
// tokens the endpoint issued stay valid until they are spent, so several accounts can
// refresh against one fake.
func (s *Server) SetRefreshToken(tok string) {
	s.tokens.mu.Lock()
	s.tokens.refresh[tok] = false
	s.tokens.mu.Unlock()
}

// Refreshes returns the number of successful refreshes so far.
func (s *Server) Refreshes() int {
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	return s.tokens.refreshes
}

var oauthDialect = dialect{provider: ProviderAnthropic, writeError: writeOAuthError}

// tokenForm is a token request, sent as JSON (Claude Code) or as a form (RFC 6749).
type tokenForm struct {
	GrantType    string `json:"grant_type"`
	RefreshToken string `json:"refresh_token"`
	ClientID     string `json:"client_id"`
}

// handleOAuthToken serves POST /v1/oauth/token with grant_type=refresh_token. The
// script runs before the token is checked, so a scripted failure leaves it unspent.
func (s *Server) handleOAuthToken(w http.ResponseWriter, r *http.Request) {
	x := s.begin(w, r, &oauthDialect, EndpointOAuthToken)
	defer s.record(x.e)
	body, ok := x.readPost()
	if !ok {
		return
	}
	var f tokenForm
	if strings.Contains(r.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(body, &f); err != nil {
			x.fail(apiError{status: http.StatusBadRequest, message: "the body is not a JSON object: " + err.Error()})
			return
		}
	} else {
		v, err := url.ParseQuery(string(body))
		if err != nil {
			x.fail(apiError{status: http.StatusBadRequest, message: "the body is not a form: " + err.Error()})
			return
		}
		f = tokenForm{GrantType: v.Get("grant_type"), RefreshToken: v.Get("refresh_token"), ClientID: v.Get("client_id")}
	}
	if _, ok := x.behave(x.request(body, "", false, ""), nil); !ok {
		return
	}
	switch {
	case f.GrantType != "refresh_token":
		x.fail(apiError{status: http.StatusBadRequest, typ: "unsupported_grant_type", message: "grant_type must be refresh_token"})
		return
	case f.RefreshToken == "":
		x.fail(apiError{status: http.StatusBadRequest, message: "refresh_token is required"})
		return
	}
	access, refresh, ok := s.tokens.rotate(f.RefreshToken)
	if !ok {
		x.fail(apiError{status: http.StatusBadRequest, typ: "invalid_grant", message: "Refresh token not found or invalid"})
		return
	}
	out := append(make([]byte, 0, 200), `{"access_token":`...)
	out = appendString(out, access)
	out = append(out, `,"refresh_token":`...)
	out = appendString(out, refresh)
	out = append(out, `,"expires_in":`...)
	out = strconv.AppendInt(out, int64((s.tokens.ttl+time.Second-1)/time.Second), 10)
	out = append(out, `,"token_type":"Bearer"}`...)
	w.Header().Set("Cache-Control", "no-store")
	x.e.Status = http.StatusOK
	x.e.Complete = writeJSON(w, out) == nil
}

// writeOAuthError answers with an RFC 6749 error: {"error":…,"error_description":…}.
func writeOAuthError(w http.ResponseWriter, _ string, ae *apiError) error {
	code := ae.typ
	if code == "" {
		switch {
		case ae.status == http.StatusUnauthorized:
			code = "invalid_client"
		case ae.status == http.StatusTooManyRequests || ae.status == http.StatusServiceUnavailable:
			code = "temporarily_unavailable"
		case ae.status >= 500:
			code = "server_error"
		default:
			code = "invalid_request"
		}
	}
	message := ae.message
	if message == "" {
		message = statusMessage(ae.status)
	}
	b := append(make([]byte, 0, 128), `{"error":`...)
	b = appendString(b, code)
	b = append(b, `,"error_description":`...)
	b = appendString(b, message)
	return writeErrorBody(w, ae.status, append(b, '}'))
}
