package web

import (
	"errors"
	"net/http"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/views"
)

func (s *Server) groupShow(w http.ResponseWriter, r *http.Request) {
	id, ok := idParam(r)
	if !ok {
		s.notFound(w, r)
		return
	}
	d, _, err := s.groupPage(r.Context(), id)
	if errors.Is(err, pgx.ErrNoRows) {
		s.notFound(w, r)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.page(w, r, http.StatusOK, "Group "+d.Form.Name, "admin", views.GroupContent(d))
}
