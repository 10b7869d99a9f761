package fakellm

import (
	"net/http"
	"time"
)

type model struct {
	id, displayName string
	created         time.Time
}

// models is what the Anthropic /v1/models lists, newest first as the real API does.
var models = []model{
	{"claude-haiku-4-5", "Claude Haiku 4.5", time.Date(2025, 10, 15, 0, 0, 0, 0, time.UTC)},
	{"claude-sonnet-4-5", "Claude Sonnet 4.5", time.Date(2025, 9, 29, 0, 0, 0, 0, time.UTC)},
	{"claude-opus-4-1", "Claude Opus 4.1", time.Date(2025, 8, 5, 0, 0, 0, 0, time.UTC)},
	{"claude-3-7-sonnet-20250219", "Claude Sonnet 3.7", time.Date(2025, 2, 24, 0, 0, 0, 0, time.UTC)},
}

// geminiModels is what /v1beta/models lists.
var geminiModels = []model{
	{"gemini-3.5-flash", "Gemini 3.5 Flash", time.Time{}},
	{"gemini-3.1-pro-preview", "Gemini 3.1 Pro Preview", time.Time{}},
	{"gemini-2.5-pro", "Gemini 2.5 Pro", time.Time{}},
	{"gemini-2.5-flash", "Gemini 2.5 Flash", time.Time{}},
	{"gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", time.Time{}},
}

// catalog holds one provider's model responses, marshalled once.
type catalog struct {
	list []byte
	one  map[string][]byte
}

// modelCatalog holds the model responses of every provider.
type modelCatalog struct {
	anthropic, gemini catalog
}

func newModelCatalog() modelCatalog {
	return modelCatalog{
		anthropic: buildCatalog(models, appendAnthropicModel, `{"data":[`,
			`],"has_more":false,"first_id":`+string(appendString(nil, models[0].id))+
				`,"last_id":`+string(appendString(nil, models[len(models)-1].id))+`}`),
		gemini: buildCatalog(geminiModels, appendGeminiModel, `{"models":[`, `]}`),
	}
}

func buildCatalog(ms []model, appendOne func([]byte, model) []byte, head, tail string) catalog {
	c := catalog{one: make(map[string][]byte, len(ms))}
	list := []byte(head)
	for i, m := range ms {
		b := appendOne(nil, m)
		c.one[m.id] = b
		if i > 0 {
			list = append(list, ',')
		}
		list = append(list, b...)
	}
	c.list = append(list, tail...)
	return c
}

func appendAnthropicModel(b []byte, m model) []byte {
	b = append(b, `{"type":"model","id":`...)
	b = appendString(b, m.id)
	b = append(b, `,"display_name":`...)
	b = appendString(b, m.displayName)
	b = append(b, `,"created_at":`...)
	b = appendString(b, m.created.Format(time.RFC3339))
	return append(b, '}')
}

func appendGeminiModel(b []byte, m model) []byte {
	b = append(b, `{"name":`...)
	b = appendString(b, "models/"+m.id)
	b = append(b, `,"version":"001","displayName":`...)
	b = appendString(b, m.displayName)
	b = append(b, `,"description":`...)
	b = appendString(b, m.displayName+" (fakellm)")
	b = append(b, `,"inputTokenLimit":1048576,"outputTokenLimit":65536,`+
		`"supportedGenerationMethods":["generateContent","countTokens","createCachedContent","batchGenerateContent"],`+
		`"temperature":1,"topP":0.95,"topK":64,"maxTemperature":2,"thinking":true}`...)
	return b
}

// handleModelList serves GET /v1/models. Paging parameters are ignored: the whole list
// fits in one page.
func (s *Server) handleModelList(w http.ResponseWriter, r *http.Request) {
	s.serveModel(w, r, &anthropicDialect, s.models.anthropic.list, apiError{})
}

// handleModelGet serves GET /v1/models/{id}.
func (s *Server) handleModelGet(w http.ResponseWriter, r *http.Request, id string) {
	s.serveModel(w, r, &anthropicDialect, s.models.anthropic.one[id], apiError{
		status: http.StatusNotFound, message: "model: " + id,
	})
}

// handleGeminiModelList serves GET /v1beta/models.
func (s *Server) handleGeminiModelList(w http.ResponseWriter, r *http.Request) {
	s.serveModel(w, r, &geminiDialect, s.models.gemini.list, apiError{})
}

// handleGeminiModelGet serves GET /v1beta/models/{id}.
func (s *Server) handleGeminiModelGet(w http.ResponseWriter, r *http.Request, id string) {
	s.serveModel(w, r, &geminiDialect, s.models.gemini.one[id], apiError{
		status: http.StatusNotFound,
		message: "models/" + id + " is not found for API version v1beta, or is not supported for generateContent. " +
			"Call ListModels to see the list of available models and their supported methods.",
	})
}

// serveModel answers a GET for a model or a list, body, in dialect d; a nil body is
// answered with missing.
func (s *Server) serveModel(w http.ResponseWriter, r *http.Request, d *dialect, body []byte, missing apiError) {
	requestID := s.newRequestID()
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		_ = d.writeError(w, requestID, &apiError{status: http.StatusMethodNotAllowed})
		return
	}
	if res := s.checkCredential(d.credential(r)); res != authOK {
		ae := d.authError(res)
		_ = d.writeError(w, requestID, &ae)
		return
	}
	if body == nil {
		_ = d.writeError(w, requestID, &missing)
		return
	}
	if d.provider == ProviderAnthropic {
		w.Header().Set("Request-Id", requestID)
	}
	_ = writeJSON(w, body)
}
