package web

import "net/http"

func (s *Server) logoutSubmit(w http.ResponseWriter, r *http.Request) {
	if err := s.sessions.Destroy(r.Context()); err != nil {
		s.serverError(w, r, err)
		return
	}
	s.flash(r, "success", "You have signed out.")
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
