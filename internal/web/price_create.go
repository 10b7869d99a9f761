package web

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/invalidate"
	"github.com/tollgate/tollgate/views"
)

// priceCreate adds a price rule, in force from now, and tells every proxy.
func (s *Server) priceCreate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form := priceFormFromRequest(r)
	params, errs := priceParams(form, nowMicro(), currentUser(r).ID)
	if errs == nil {
		exists, err := s.q.PriceRuleExists(ctx, s.db, sqlc.PriceRuleExistsParams{Provider: params.Provider, Pattern: params.Pattern, Match: params.Match})
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		if exists {
			errs = map[string]string{"pattern": "This rule has a price already. Open it in the catalogue to give it a new price."}
		}
	}
	if errs != nil {
		form.Errors = errs
		s.page(w, r, http.StatusUnprocessableEntity, "Add a price", "admin", views.PriceNewContent(form))
		return
	}
	var row sqlc.Price
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		if row, err = s.q.PriceInsert(ctx, tx, params); err != nil {
			return err
		}
		if err := invalidate.Record(ctx, tx, invalidate.Event{Kind: invalidate.Prices}); err != nil {
			return err
		}
		return s.auditAdmin(ctx, tx, r, "price.create", "price", strconv.FormatInt(row.ID, 10), priceDetail(row))
	})
	if errors.Is(err, pgx.ErrNoRows) {
		form.Errors = map[string]string{"": "Another price for this rule was saved at the same instant. Check the catalogue and try again."}
		s.page(w, r, http.StatusConflict, "Add a price", "admin", views.PriceNewContent(form))
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.publish(ctx, invalidate.Event{Kind: invalidate.Prices})
	s.flash(r, "success", "Price added; it applies from now.")
	http.Redirect(w, r, "/admin/prices/"+strconv.FormatInt(row.ID, 10), http.StatusSeeOther)
}
