package web

import (
	"net/http"

	"github.com/tollgate/tollgate/views"
)

func (s *Server) keyList(w http.ResponseWriter, r *http.Request) {
	s.renderKeysPage(w, r, http.StatusOK, nil, views.KeyForm{})
}

// renderKeysPage renders the full keys page, with a just-created key or a form error.
func (s *Server) renderKeysPage(w http.ResponseWriter, r *http.Request, status int, created *views.CreatedKey, form views.KeyForm) {
	keys, err := s.q.APIKeyListByUser(r.Context(), s.db, currentUser(r).ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.page(w, r, status, "API keys", "keys", views.KeysContent(views.Keys{
		Keys: keyRows(keys), Created: created, Form: form, ProxyURL: s.proxyURL,
	}))
}
