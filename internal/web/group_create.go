package web

import (
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/db/sqlc"
)

// groupCreate adds a group with neutral settings and opens it for editing. A group
// nobody is in changes no routing or price, so nothing is published.
func (s *Server) groupCreate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := strings.TrimSpace(r.PostFormValue("name"))
	switch {
	case name == "":
		s.renderGroups(w, r, http.StatusUnprocessableEntity, name, "Give the group a name.")
		return
	case utf8.RuneCountInString(name) > 100:
		s.renderGroups(w, r, http.StatusUnprocessableEntity, name, "Keep the name under 100 characters.")
		return
	}
	var g sqlc.Group
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		if g, err = s.q.GroupInsert(ctx, tx, sqlc.GroupInsertParams{Name: name}); err != nil {
			return err
		}
		return s.auditAdmin(ctx, tx, r, "group.create", "group", strconv.FormatInt(g.ID, 10), map[string]any{"name": name})
	})
	if isUniqueViolation(err) {
		s.renderGroups(w, r, http.StatusUnprocessableEntity, name, "A group with this name exists already.")
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.flash(r, "success", "Group “"+name+"” created. Set its factors and pools below.")
	http.Redirect(w, r, "/admin/groups/"+strconv.FormatInt(g.ID, 10), http.StatusSeeOther)
}
