package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/schedule"
)

const providerGemini = "gemini"

// geminiGenerate is POST /v1beta/models/{model}:generateContent and
// :streamGenerateContent (SSE with alt=sse, else a JSON array written piece by piece).
var geminiGenerate = protocol{
	provider:      providerGemini,
	endpoint:      "generate",
	billable:      true,
	writeError:    geminiError,
	streamError:   geminiStreamError,
	newTap:        func() tap { return &geminiTap{} },
	bodyUsage:     geminiBodyUsage,
	setCredential: setGeminiCredential,
	request:       geminiRequest,
	upstreamURL:   geminiURL,
	jsonStream:    true,
}

// geminiCountTokens is POST /v1beta/models/{model}:countTokens: routed, never billed.
var geminiCountTokens = protocol{
	provider:      providerGemini,
	endpoint:      "count_tokens",
	writeError:    geminiError,
	newTap:        func() tap { return &geminiTap{} },
	bodyUsage:     geminiBodyUsage,
	setCredential: setGeminiCredential,
	request:       geminiRequest,
	upstreamURL:   geminiURL,
}

// geminiAction serves every POST under /v1beta/models/ by its ":action" suffix.
func (s *Server) geminiAction(w http.ResponseWriter, r *http.Request) {
	_, action, _ := strings.Cut(r.PathValue("target"), ":")
	switch action {
	case "generateContent", "streamGenerateContent":
		s.serve(w, r, &geminiGenerate)
	case "countTokens":
		s.serve(w, r, &geminiCountTokens)
	default:
		geminiError(w, http.StatusNotFound, errNotFound, "Tollgate: unsupported Gemini method "+action, newRequestID())
	}
}

func geminiRequest(r *http.Request, req *sniffed) error {
	model, action, ok := strings.Cut(r.PathValue("target"), ":")
	if !ok || model == "" {
		return errors.New("the path must be /v1beta/models/{model}:{method}")
	}
	req.Model = strings.TrimPrefix(model, "models/")
	// The model goes back into the upstream path. Escaped, a "/" or "%" would still be a
	// path the provider may decode and normalise differently; no Gemini model has one.
	if strings.ContainsAny(req.Model, `/\%`) || req.Model == "." || req.Model == ".." {
		return errors.New("the model " + strconv.Quote(req.Model) + " is not a Gemini model name")
	}
	req.Stream = action == "streamGenerateContent"
	req.modelEnd = 0 // the model is in the path, not the body
	return nil
}

func geminiURL(acc *schedule.Account, r *http.Request, upstreamModel string) string {
	_, action, _ := strings.Cut(r.PathValue("target"), ":")
	return joinURL(acc.BaseURL, "/v1beta/models/"+url.PathEscape(upstreamModel)+":"+action, r.URL.RawQuery)
}

func setGeminiCredential(h http.Header, acc *schedule.Account) {
	h.Set("X-Goog-Api-Key", acc.Credential.APIKey)
}

// geminiStatus maps HTTP statuses to google.rpc status names.
var geminiStatus = map[int]string{400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "FAILED_PRECONDITION",
	403: "PERMISSION_DENIED", 404: "NOT_FOUND", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
	499: "CANCELLED", 500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE"}

// geminiError writes Google's error shape; Tollgate's own error type goes in an
// ErrorInfo detail (domain "tollgate"), where Google APIs put machine-readable reasons.
func geminiError(w http.ResponseWriter, status int, typ, msg, requestID string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(geminiErrorBody(status, typ, msg, requestID)) //nolint:errcheck
}

func geminiErrorBody(status int, typ, msg, requestID string) []byte {
	st := geminiStatus[status]
	if st == "" {
		st = "UNKNOWN"
	}
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"code": status, "message": msg, "status": st,
		"details": []any{map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
			"reason": typ, "domain": "tollgate", "metadata": map[string]string{"request_id": requestID}}},
	}})
	return body
}

// geminiUsage is usageMetadata. promptTokenCount includes cached tokens; thoughts are
// billed as output on top of candidates.
type geminiUsage struct {
	PromptTokenCount        int64 `json:"promptTokenCount"`
	CandidatesTokenCount    int64 `json:"candidatesTokenCount"`
	CachedContentTokenCount int64 `json:"cachedContentTokenCount"`
	ThoughtsTokenCount      int64 `json:"thoughtsTokenCount"`
}

func (g *geminiUsage) usage() billing.Usage {
	cached := min(g.CachedContentTokenCount, g.PromptTokenCount)
	return billing.Usage{Input: g.PromptTokenCount - cached, CacheRead: cached,
		Output: g.CandidatesTokenCount + g.ThoughtsTokenCount, Reasoning: g.ThoughtsTokenCount}
}

type geminiChunk struct {
	UsageMetadata *geminiUsage `json:"usageMetadata"`
	Candidates    []struct {
		FinishReason string `json:"finishReason"`
	} `json:"candidates"`
	Error *struct {
		Status string `json:"status"`
	} `json:"error"`
}

// geminiTap reads either stream format. With alt=sse each data line is a chunk whose
// usageMetadata is cumulative (the last one wins). Without it the body is one JSON
// array written piece by piece; it is collected (bounded) and decoded at the end, as far
// as it got if the stream was cut.
type geminiTap struct {
	mode     byte // 0 unknown, 's' SSE, 'a' JSON array
	usage    billing.Usage
	sawUsage bool
	finished bool
	errType  string
	pending  []byte
	array    []byte
	decoded  bool
}

const maxGeminiArray = 16 << 20

func (t *geminiTap) Line(line []byte, partial bool) {
	line, ok := assemble(&t.pending, line, partial)
	if !ok {
		return
	}
	trimmed := bytes.TrimSpace(line)
	if t.mode == 0 && len(trimmed) > 0 {
		t.mode = 'a'
		if bytes.HasPrefix(trimmed, prefixData) {
			t.mode = 's'
		}
	}
	switch t.mode {
	case 's':
		if bytes.HasPrefix(trimmed, prefixData) {
			t.chunk(bytes.TrimSpace(trimmed[len(prefixData):]))
		}
	case 'a':
		if len(t.array)+len(line) <= maxGeminiArray {
			t.array = append(t.array, line...)
		}
	}
}

func (t *geminiTap) chunk(d []byte) {
	var c geminiChunk
	if json.Unmarshal(d, &c) != nil {
		return
	}
	if c.UsageMetadata != nil {
		t.usage, t.sawUsage = c.UsageMetadata.usage(), true
	}
	for _, cand := range c.Candidates {
		if cand.FinishReason != "" {
			t.finished = true
		}
	}
	if c.Error != nil {
		t.errType = strings.ToLower(c.Error.Status)
		if t.errType == "" {
			t.errType = "error"
		}
	}
}

func (t *geminiTap) decodeArray() {
	if t.decoded || t.mode != 'a' {
		return
	}
	t.decoded = true
	dec := json.NewDecoder(bytes.NewReader(t.array))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return
	}
	for dec.More() {
		var raw json.RawMessage
		if dec.Decode(&raw) != nil {
			return // cut mid-element: what came before counts
		}
		t.chunk(raw)
	}
}

func (t *geminiTap) Usage() (billing.Usage, bool) { t.decodeArray(); return t.usage, t.sawUsage }

// UsageSoFar: an SSE stream's chunks each carry the usage so far; a JSON-array stream is
// decoded only at its end, so it reports nothing before.
func (t *geminiTap) UsageSoFar() (billing.Usage, bool) {
	if t.mode != 's' {
		return billing.Usage{}, false
	}
	return t.usage, t.sawUsage
}
func (t *geminiTap) Finished() bool    { t.decodeArray(); return t.finished }
func (t *geminiTap) ErrorType() string { t.decodeArray(); return t.errType }

// geminiBodyUsage reads a non-streaming answer (one GenerateContentResponse).
func geminiBodyUsage(body []byte) (billing.Usage, bool) {
	var u geminiUsage
	if !decodeMember(body, "usageMetadata", &u) {
		return billing.Usage{}, false
	}
	return u.usage(), true
}

// geminiModels answers GET /v1beta/models with the models the key may use.
func (s *Server) geminiModels(w http.ResponseWriter, r *http.Request) {
	rid := newRequestID()
	w.Header().Set("X-Tollgate-Request-Id", rid)
	key, status := s.authenticate(w, r, &geminiGenerate, rid, time.Now())
	if status != 0 {
		return
	}
	ids := s.modelsFor(key.Models, key.GroupID, providerGemini)
	type model struct {
		Name                       string   `json:"name"`
		BaseModelID                string   `json:"baseModelId"`
		DisplayName                string   `json:"displayName"`
		SupportedGenerationMethods []string `json:"supportedGenerationMethods"`
	}
	out := struct {
		Models []model `json:"models"`
	}{Models: []model{}}
	for _, id := range ids {
		out.Models = append(out.Models, model{Name: "models/" + id, BaseModelID: id, DisplayName: id,
			SupportedGenerationMethods: []string{"generateContent", "streamGenerateContent", "countTokens"}})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out) //nolint:errcheck
}
