package fakellm

import (
	"net/http"
	"time"
)

type model struct {
	id, displayName string
	created         time.Time
}

// models is what /v1/models lists, newest first as the real API does.
var models = []model{
	{"claude-haiku-4-5", "Claude Haiku 4.5", time.Date(2025, 10, 15, 0, 0, 0, 0, time.UTC)},
	{"claude-sonnet-4-5", "Claude Sonnet 4.5", time.Date(2025, 9, 29, 0, 0, 0, 0, time.UTC)},
	{"claude-opus-4-1", "Claude Opus 4.1", time.Date(2025, 8, 5, 0, 0, 0, 0, time.UTC)},
	{"claude-3-7-sonnet-20250219", "Claude Sonnet 3.7", time.Date(2025, 2, 24, 0, 0, 0, 0, time.UTC)},
}

// modelCatalog holds the model responses, marshalled once.
type modelCatalog struct {
	list []byte
	one  map[string][]byte
}

func newModelCatalog() modelCatalog {
	c := modelCatalog{one: make(map[string][]byte, len(models))}
	list := []byte(`{"data":[`)
	for i, m := range models {
		b := append([]byte(`{"type":"model","id":`), appendString(nil, m.id)...)
		b = append(b, `,"display_name":`...)
		b = appendString(b, m.displayName)
		b = append(b, `,"created_at":`...)
		b = appendString(b, m.created.Format(time.RFC3339))
		b = append(b, '}')
		c.one[m.id] = b
		if i > 0 {
			list = append(list, ',')
		}
		list = append(list, b...)
	}
	list = append(list, `],"has_more":false,"first_id":`...)
	list = appendString(list, models[0].id)
	list = append(list, `,"last_id":`...)
	list = appendString(list, models[len(models)-1].id)
	c.list = append(list, '}')
	return c
}

// handleModelList serves GET /v1/models. Paging parameters are ignored: the whole list
// fits in one page.
func (s *Server) handleModelList(w http.ResponseWriter, r *http.Request) {
	s.serveModel(w, r, s.models.list)
}

// handleModelGet serves GET /v1/models/{id}.
func (s *Server) handleModelGet(w http.ResponseWriter, r *http.Request, id string) {
	s.serveModel(w, r, s.models.one[id]) // nil if unknown: 404
}

func (s *Server) serveModel(w http.ResponseWriter, r *http.Request, body []byte) {
	requestID := s.newRequestID()
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		_ = s.writeError(w, requestID, http.StatusMethodNotAllowed, "", "")
		return
	}
	if ok, msg := s.authorized(r); !ok {
		_ = s.writeError(w, requestID, http.StatusUnauthorized, "", msg)
		return
	}
	if body == nil {
		_ = s.writeError(w, requestID, http.StatusNotFound, "", "model: "+r.URL.Path[len("/v1/models/"):])
		return
	}
	w.Header().Set("Request-Id", requestID)
	_ = writeJSON(w, body)
}
