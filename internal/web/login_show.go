package web

import (
	"net/http"

	"github.com/tollgate/tollgate/views"
)

func (s *Server) loginShow(w http.ResponseWriter, r *http.Request) {
	if currentUser(r) != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.page(w, r, http.StatusOK, "Sign in", "", views.LoginContent(views.Login{}))
}
