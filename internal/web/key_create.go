package web

import (
	"net/http"

	"github.com/tollgate/tollgate/views"
)

// keyCreate makes a key and answers with its secret, shown this once. The secret is
// rendered straight into the response (never stored or redirected through the session).
func (s *Server) keyCreate(w http.ResponseWriter, r *http.Request) {
	user := currentUser(r)
	name, problem := validKeyName(r.PostFormValue("name"))
	if problem != "" {
		form := views.KeyForm{Name: name, Error: problem}
		if isHTMX(r) {
			s.render(w, r, http.StatusUnprocessableEntity, views.KeyCreateSection(nil, form))
			return
		}
		s.renderKeysPage(w, r, http.StatusUnprocessableEntity, nil, form)
		return
	}

	key, plaintext, err := s.createKey(r.Context(), user.ID, name, clientIP(r))
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	created := &views.CreatedKey{Key: keyRow(key), Plaintext: plaintext}
	if isHTMX(r) {
		s.render(w, r, http.StatusOK, views.KeyCreated(*created))
		return
	}
	s.renderKeysPage(w, r, http.StatusOK, created, views.KeyForm{})
}
