package fakellm

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Options configures a Server.
type Options struct {
	// APIKeys, when not empty, are the only keys accepted (x-api-key, x-goog-api-key,
	// ?key= or Authorization: Bearer). When empty any non-empty key is.
	APIKeys []string
	// CheckAccessTokens makes Bearer tokens valid only if the token endpoint issued
	// them (and they have not expired) or AddAccessToken added them; others get a 401
	// (authentication_error, invalid_api_key, UNAUTHENTICATED). APIKeys still decides
	// for keys sent another way. SetCheckAccessTokens changes it later.
	CheckAccessTokens bool
	// AccessTokenTTL is the lifetime of issued access tokens, reported as expires_in
	// and enforced when access tokens are checked. Default one hour.
	AccessTokenTTL time.Duration
	// Logger gets one debug line per served request. Nil discards.
	Logger *slog.Logger
	// MaxLog caps the served-log entries kept, oldest dropped first. Default 100000.
	MaxLog int
}

// Server is the fake upstream. It is an http.Handler; all methods are safe for
// concurrent use.
type Server struct {
	keys   map[string]struct{}
	logger *slog.Logger
	script atomic.Pointer[func(*Request) Behavior]
	ids    atomic.Int64
	log    servedLog
	models modelCatalog
	tokens *tokenStore
}

// New returns a Server ready to serve.
func New(opts Options) *Server {
	s := &Server{
		logger: opts.Logger,
		models: newModelCatalog(),
		tokens: newTokenStore(opts.AccessTokenTTL, opts.CheckAccessTokens),
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if len(opts.APIKeys) > 0 {
		s.keys = make(map[string]struct{}, len(opts.APIKeys))
		for _, k := range opts.APIKeys {
			s.keys[k] = struct{}{}
		}
	}
	s.log.max = opts.MaxLog
	if s.log.max <= 0 {
		s.log.max = 100000
	}
	return s
}

// ServeHTTP routes a request. This switch is the whole route table.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch path := r.URL.Path; {
	case path == "/v1/messages":
		s.handleMessages(w, r, false)
	case path == "/v1/messages/count_tokens":
		s.handleMessages(w, r, true)
	case path == "/v1/models":
		s.handleModelList(w, r)
	case strings.HasPrefix(path, "/v1/models/"):
		s.handleModelGet(w, r, strings.TrimPrefix(path, "/v1/models/"))
	case path == "/v1/chat/completions":
		s.handleChat(w, r)
	case path == "/v1/responses", path == "/backend-api/codex/responses":
		s.handleResponses(w, r)
	case path == "/v1beta/models":
		s.handleGeminiModelList(w, r)
	case strings.HasPrefix(path, "/v1beta/models/"):
		s.handleGemini(w, r, strings.TrimPrefix(path, "/v1beta/models/"))
	case path == "/v1/oauth/token":
		s.handleOAuthToken(w, r)
	case path == "/healthz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	case path == "/_fakellm/served":
		s.handleServedList(w, r)
	case path == "/_fakellm/reset":
		s.handleServedReset(w, r)
	case strings.HasPrefix(path, "/v1beta/"):
		_ = writeGeminiError(w, "", &apiError{status: http.StatusNotFound})
	default:
		s.writeError(w, s.newRequestID(), http.StatusNotFound, "", "Not found")
	}
}

// newRequestID numbers a response that is not an exchange.
func (s *Server) newRequestID() string {
	return "req_fake_" + strconv.FormatInt(s.ids.Add(1), 10)
}

// sleep waits d, or less if ctx ends first; it reports whether the whole wait happened.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
