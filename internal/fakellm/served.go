package fakellm

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Usage is a response's usage in tokens, in Anthropic's buckets. OpenAI and Gemini
// usage maps onto them as those providers bill it: InputTokens is the prompt tokens
// without the cached ones, CacheRead the cached ones, OutputTokens the completion,
// output or candidates+thoughts tokens (reasoning included), and Reasoning repeats the
// reasoning or thoughts tokens for information. Anthropic reports no Reasoning.
type Usage struct {
	InputTokens     int64 `json:"input_tokens"`
	OutputTokens    int64 `json:"output_tokens"`
	CacheCreation5m int64 `json:"cache_creation_5m"`
	CacheCreation1h int64 `json:"cache_creation_1h"`
	CacheRead       int64 `json:"cache_read"`
	Reasoning       int64 `json:"reasoning"`
}

// Providers and endpoints of the served log.
const (
	ProviderAnthropic = "anthropic"
	ProviderOpenAI    = "openai"
	ProviderGemini    = "gemini"

	EndpointMessages       = "messages"        // POST /v1/messages
	EndpointCountTokens    = "count_tokens"    // POST /v1/messages/count_tokens
	EndpointChat           = "chat"            // POST /v1/chat/completions
	EndpointResponses      = "responses"       // /v1/responses, /backend-api/codex/responses
	EndpointGeminiGenerate = "gemini_generate" // :generateContent, :streamGenerateContent
	EndpointGeminiCount    = "gemini_count"    // :countTokens
	EndpointOAuthToken     = "oauth_token"     // POST /v1/oauth/token
)

// Served is one entry of the served log: a call to a model endpoint of any dialect or
// to the OAuth token endpoint.
type Served struct {
	// Seq numbers entries in the order they were recorded, from 1. Reset keeps counting.
	Seq      int64     `json:"seq"`
	Time     time.Time `json:"time"`
	Provider string    `json:"provider"` // ProviderAnthropic, …
	Endpoint string    `json:"endpoint"` // EndpointMessages, …
	Path     string    `json:"path"`
	Method   string    `json:"method"`
	Model    string    `json:"model"`
	Stream   bool      `json:"stream"`
	Status   int       `json:"status"` // 0 if no status line was written
	// MessageID is the id of the answer: msg_fake_N, chatcmpl-fake-N, resp_fake_N or
	// the Gemini responseId fake-N, where req_fake_N is RequestID.
	MessageID string `json:"message_id"`
	RequestID string `json:"request_id"`
	// Header holds the request headers as received.
	Header http.Header `json:"header"`
	// Usage is the final cumulative usage the client could observe on the wire: for an
	// Anthropic stream that stopped early, message_start's usage, plus message_delta's
	// only if that event was written; for Chat Completions the usage chunk's (zero if
	// include_usage was off or the chunk was not written); for Responses
	// response.completed's; for Gemini the last chunk's usageMetadata. Zero for errors.
	// For count_tokens and countTokens, InputTokens is the count returned.
	Usage Usage `json:"usage"`
	// Generated is the usage of the whole answer the fake planned, whether or not the
	// client saw it: what a provider would bill for a stream without include_usage, cut
	// or failed midway. Equal to Usage for complete answers that report usage, zero
	// for errors.
	Generated Usage `json:"generated"`
	// Complete is false if the response was cut, the client went away, or the stream
	// carried an error event.
	Complete      bool `json:"complete"`
	EventsWritten int  `json:"events_written"`
}

// servedLog keeps the last max entries. Entries are appended in Seq order, so a
// ServedSince is a binary search.
type servedLog struct {
	mu      sync.Mutex
	seq     int64
	entries []Served
	max     int
}

// record appends e to the log. It runs in the handler's defer, so it sees the final
// state of the entry even when the stream was aborted by a panic.
func (s *Server) record(e *Served) {
	l := &s.log
	l.mu.Lock()
	l.seq++
	e.Seq = l.seq
	l.entries = append(l.entries, *e)
	// Trim in batches so that appending stays O(1) amortised.
	if len(l.entries) >= 2*l.max {
		n := copy(l.entries, l.entries[len(l.entries)-l.max:])
		clear(l.entries[n:])
		l.entries = l.entries[:n]
	}
	l.mu.Unlock()

	if s.logger.Enabled(context.Background(), slog.LevelDebug) {
		s.logger.LogAttrs(context.Background(), slog.LevelDebug, "fakellm served",
			slog.Int64("seq", e.Seq),
			slog.String("request_id", e.RequestID),
			slog.String("provider", e.Provider),
			slog.String("endpoint", e.Endpoint),
			slog.String("path", e.Path),
			slog.String("model", e.Model),
			slog.Bool("stream", e.Stream),
			slog.Int("status", e.Status),
			slog.Bool("complete", e.Complete),
			slog.Int64("input_tokens", e.Usage.InputTokens),
			slog.Int64("output_tokens", e.Usage.OutputTokens),
		)
	}
}

// Served returns a copy of the log, oldest first.
func (s *Server) Served() []Served {
	return s.ServedSince(0)
}

// ServedSince returns the entries with Seq > seq, oldest first.
func (s *Server) ServedSince(seq int64) []Served {
	l := &s.log
	l.mu.Lock()
	defer l.mu.Unlock()
	entries := l.entries
	if len(entries) > l.max {
		entries = entries[len(entries)-l.max:]
	}
	i := sort.Search(len(entries), func(i int) bool { return entries[i].Seq > seq })
	out := make([]Served, len(entries)-i)
	copy(out, entries[i:])
	return out
}

// LastSeq returns the Seq of the latest entry recorded (0 if none yet), to pass to
// ServedSince later.
func (s *Server) LastSeq() int64 {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	return s.log.seq
}

// Reset empties the log. Seq keeps counting, so a ServedSince poller is not confused.
func (s *Server) Reset() {
	s.log.mu.Lock()
	s.log.entries = nil
	s.log.mu.Unlock()
}

// handleServedList serves GET /_fakellm/served?since=N.
func (s *Server) handleServedList(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		_ = s.writeError(w, s.newRequestID(), http.StatusMethodNotAllowed, "", "")
		return
	}
	var since int64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			_ = s.writeError(w, s.newRequestID(), http.StatusBadRequest, "", "since must be an integer")
			return
		}
		since = n
	}
	body, err := json.Marshal(s.ServedSince(since))
	if err != nil {
		_ = s.writeError(w, s.newRequestID(), http.StatusInternalServerError, "", "encode served log: "+err.Error())
		return
	}
	_ = writeJSON(w, body)
}

// handleServedReset serves POST /_fakellm/reset.
func (s *Server) handleServedReset(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		_ = s.writeError(w, s.newRequestID(), http.StatusMethodNotAllowed, "", "")
		return
	}
	s.Reset()
	w.WriteHeader(http.StatusNoContent)
}
