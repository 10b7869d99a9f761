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
	// APIKeys, when not empty, are the only keys accepted (x-api-key or
	// Authorization: Bearer). When empty any non-empty key is.
	APIKeys []string
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
}

// New returns a Server ready to serve.
func New(opts Options) *Server {
	s := &Server{logger: opts.Logger, models: newModelCatalog()}
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
	case path == "/healthz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	case path == "/_fakellm/served":
		s.handleServedList(w, r)
	case path == "/_fakellm/reset":
		s.handleServedReset(w, r)
	default:
		s.writeError(w, s.newRequestID(), http.StatusNotFound, "", "Not found")
	}
}

// newRequestID numbers a response. The number is also used for the message id, so
// req_fake_7 answers with msg_fake_7.
func (s *Server) newRequestID() string {
	return "req_fake_" + strconv.FormatInt(s.ids.Add(1), 10)
}

// authorized checks the key the way Anthropic does: x-api-key, or a Bearer token.
func (s *Server) authorized(r *http.Request) (ok bool, message string) {
	key := r.Header.Get("X-Api-Key")
	if key == "" {
		if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
			key = strings.TrimSpace(auth[7:])
		}
	}
	if key == "" {
		return false, "x-api-key header is required"
	}
	if s.keys != nil {
		if _, found := s.keys[key]; !found {
			return false, "invalid x-api-key"
		}
	}
	return true, ""
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
