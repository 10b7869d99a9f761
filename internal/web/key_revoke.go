package web

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/tollgate/tollgate/views"
)

func (s *Server) keyRevoke(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		s.notFound(w, r)
		return
	}
	key, err := s.revokeKey(r.Context(), currentUser(r).ID, id, clientIP(r))
	if errors.Is(err, errKeyNotFound) {
		s.notFound(w, r)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if isHTMX(r) {
		s.render(w, r, http.StatusOK, views.KeyRowView(keyRow(key)))
		return
	}
	s.flash(r, "success", "Key “"+key.Name+"” revoked. Requests with it are now refused.")
	http.Redirect(w, r, "/keys", http.StatusSeeOther)
}
