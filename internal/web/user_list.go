package web

import (
	"net/http"
	"strings"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/views"
)

// userListRows is how many users one page lists.
const userListRows = 200

// userList lists users; ?q= keeps those whose email contains it.
func (s *Server) userList(w http.ResponseWriter, r *http.Request) {
	query := strings.TrimSpace(r.URL.Query().Get("q"))
	users, err := s.q.UserList(r.Context(), s.db, sqlc.UserListParams{Query: strings.ToLower(query), MaxRows: userListRows + 1})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	d := views.AdminUsers{Query: query}
	if len(users) > userListRows {
		users, d.More = users[:userListRows], true
	}
	for _, u := range users {
		d.Users = append(d.Users, userRow(u))
	}
	s.page(w, r, http.StatusOK, "Users", "admin", views.UsersContent(d))
}

func userRow(u sqlc.UserListRow) views.UserRow {
	return views.UserRow{
		ID: u.ID, Email: u.Email, Role: u.Role, Status: u.Status, Group: u.GroupName,
		BalanceNano: u.BalanceNano, CreatedAt: u.CreatedAt,
	}
}
