package web

import (
	"net/http"

	"github.com/tollgate/tollgate/views"
)

func (s *Server) adminHome(w http.ResponseWriter, r *http.Request) {
	users, err := s.q.UserCount(r.Context(), s.db)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	keys, err := s.q.APIKeyCountActive(r.Context(), s.db)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.page(w, r, http.StatusOK, "Admin", "admin", views.AdminHomeContent(views.AdminHome{Users: users, ActiveKeys: keys}))
}
