package web

import (
	"net/http"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/views"
)

// walletRows is how many ledger entries the wallet shows.
const walletRows = 100

func (s *Server) walletShow(w http.ResponseWriter, r *http.Request) {
	s.renderWallet(w, r, http.StatusOK, views.RedeemForm{})
}

// renderWallet renders the wallet with the redeem form's state: the full page, or for
// htmx just the part it swaps. The balance is read afresh, after any redemption.
func (s *Server) renderWallet(w http.ResponseWriter, r *http.Request, status int, form views.RedeemForm) {
	ctx, user := r.Context(), currentUser(r)
	balance, err := s.q.UserBalanceGet(ctx, s.db, user.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	txs, err := s.q.WalletTxListByUser(ctx, s.db, sqlc.WalletTxListByUserParams{UserID: user.ID, MaxRows: walletRows})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	d := views.Wallet{BalanceNano: balance, Ledger: ledgerRows(txs), Redeem: form}
	if isHTMX(r) {
		s.render(w, r, status, views.WalletBody(d))
		return
	}
	s.page(w, r, status, "Wallet", "wallet", views.WalletContent(d))
}
