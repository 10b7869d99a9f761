package web

import (
	"errors"
	"net/http"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/views"
)

// adminLedgerRows is how many ledger entries a user's admin page shows.
const adminLedgerRows = 100

func (s *Server) userShow(w http.ResponseWriter, r *http.Request) {
	id, ok := idParam(r)
	if !ok {
		s.notFound(w, r)
		return
	}
	s.renderUser(w, r, http.StatusOK, id, views.AdjustForm{Nonce: newNonce()})
}

// renderUser renders a user's admin page with the adjustment form as given.
func (s *Server) renderUser(w http.ResponseWriter, r *http.Request, status int, id int64, form views.AdjustForm) {
	ctx := r.Context()
	u, err := s.q.UserGetByID(ctx, s.db, id)
	if errors.Is(err, pgx.ErrNoRows) {
		s.notFound(w, r)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	g, err := s.q.GroupGetByID(ctx, s.db, u.GroupID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	txs, err := s.q.WalletTxListByUser(ctx, s.db, sqlc.WalletTxListByUserParams{UserID: id, MaxRows: adminLedgerRows})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	d := views.AdminUser{
		User: views.UserRow{
			ID: u.ID, Email: u.Email, Role: u.Role, Status: u.Status, Group: g.Name,
			BalanceNano: u.BalanceNano, CreatedAt: u.CreatedAt,
		},
		Ledger: ledgerRows(txs),
		Adjust: form,
	}
	s.page(w, r, status, u.Email, "admin", views.UserContent(d))
}
