package fakellm

import (
	"net/http"
	"strings"
)

// credential is the key a request carries, and whether it came as a Bearer token.
type credential struct {
	key    string
	bearer bool
}

// authResult is the outcome of a key check.
type authResult uint8

const (
	authOK authResult = iota
	authMissing
	authBadKey
	authBadToken     // a Bearer token the fake did not issue, or revoked
	authExpiredToken // a Bearer token the fake issued, past its expiry
)

// checkCredential applies Options.APIKeys to keys, and, when access tokens are
// checked, the token store to Bearer tokens.
func (s *Server) checkCredential(c credential) authResult {
	if c.key == "" {
		return authMissing
	}
	if c.bearer && s.tokens.checking.Load() {
		return s.tokens.checkAccess(c.key)
	}
	if s.keys != nil {
		if _, found := s.keys[c.key]; !found {
			return authBadKey
		}
	}
	return authOK
}

// bearer returns the token of an Authorization: Bearer header, or "".
func bearer(r *http.Request) string {
	if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		return strings.TrimSpace(auth[7:])
	}
	return ""
}

// anthropicCredential reads x-api-key, or a Bearer token (OAuth, and the JS SDK).
func anthropicCredential(r *http.Request) credential {
	if key := r.Header.Get("X-Api-Key"); key != "" {
		return credential{key: key}
	}
	return credential{key: bearer(r), bearer: true}
}

// openAICredential reads the Bearer token, the only place OpenAI looks.
func openAICredential(r *http.Request) credential {
	return credential{key: bearer(r), bearer: true}
}

// geminiCredential reads x-goog-api-key, the key query parameter, or a Bearer token
// (OAuth, as Code Assist clients send).
func geminiCredential(r *http.Request) credential {
	if key := r.Header.Get("X-Goog-Api-Key"); key != "" {
		return credential{key: key}
	}
	if key := r.URL.Query().Get("key"); key != "" {
		return credential{key: key}
	}
	return credential{key: bearer(r), bearer: true}
}
