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

// priceSave gives a rule a new price from now on. It appends a row rather than editing
// one: requests billed before keep the row (and the price_id) they were billed with.
func (s *Server) priceSave(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, ok := idParam(r)
	if !ok {
		s.notFound(w, r)
		return
	}
	d, err := s.priceRule(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		s.notFound(w, r)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	form := priceFormFromRequest(r)
	// The rule is the row's, whatever the form says.
	form.ID, form.Provider, form.Match, form.Pattern = d.Form.ID, d.Rule.Provider, d.Rule.Match, d.Rule.Pattern
	params, errs := priceParams(form, nowMicro(), currentUser(r).ID)
	if errs != nil {
		form.Errors = errs
		d.Form = form
		s.page(w, r, http.StatusUnprocessableEntity, "Price", "admin", views.PriceContent(d))
		return
	}
	var row sqlc.Price
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		if row, err = s.q.PriceInsert(ctx, tx, params); err != nil {
			return err
		}
		detail := priceDetail(row)
		detail["previous_price_id"] = d.Form.ID
		if err := invalidate.Record(ctx, tx, invalidate.Event{Kind: invalidate.Prices}); err != nil {
			return err
		}
		return s.auditAdmin(ctx, tx, r, "price.update", "price", strconv.FormatInt(row.ID, 10), detail)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		form.Errors = map[string]string{"": "Another price for this rule was saved at the same instant. Reload the page and try again."}
		d.Form = form
		s.page(w, r, http.StatusConflict, "Price", "admin", views.PriceContent(d))
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.publish(ctx, invalidate.Event{Kind: invalidate.Prices})
	s.flash(r, "success", "New price saved; it applies from now. Earlier requests keep their price.")
	http.Redirect(w, r, "/admin/prices/"+strconv.FormatInt(row.ID, 10), http.StatusSeeOther)
}
