package web

import (
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5"
)

// redeemDisable withdraws every code of a batch. Redemptions already made keep their
// credit (the ledger is append-only; take money back with a balance adjustment).
func (s *Server) redeemDisable(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	batch := strings.TrimSpace(r.PostFormValue("batch"))
	var n int64
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		if n, err = s.q.RedeemBatchDisable(ctx, tx, batch); err != nil || n == 0 {
			return err
		}
		return s.auditAdmin(ctx, tx, r, "redeem.disable", "redeem_batch", batch, map[string]any{"codes": n})
	})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if n == 0 {
		s.flash(r, "error", "Nothing to disable: no enabled code in batch “"+batch+"”.")
	} else {
		s.flash(r, "success", "Batch “"+batch+"” disabled; its codes no longer work.")
	}
	http.Redirect(w, r, "/admin/redeem", http.StatusSeeOther)
}
