package web

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/views"
)

// priceShow shows a price rule (found by any of its rows): its history, and a form for
// a new price prefilled with the one in force.
func (s *Server) priceShow(w http.ResponseWriter, r *http.Request) {
	id, ok := idParam(r)
	if !ok {
		s.notFound(w, r)
		return
	}
	d, err := s.priceRule(r.Context(), id)
	if errors.Is(err, pgx.ErrNoRows) {
		s.notFound(w, r)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.page(w, r, http.StatusOK, "Price", "admin", views.PriceContent(d))
}

// priceRule loads the rule of price row id with its history. The form holds the row in
// force now (or the newest, if all are scheduled later) and posts back to it.
func (s *Server) priceRule(ctx context.Context, id int64) (views.AdminPrice, error) {
	row, err := s.q.PriceGetByID(ctx, s.db, id)
	if err != nil {
		return views.AdminPrice{}, err
	}
	history, err := s.q.PriceHistory(ctx, s.db, sqlc.PriceHistoryParams{Provider: row.Provider, Pattern: row.Pattern, Match: row.Match})
	if err != nil {
		return views.AdminPrice{}, err
	}
	current := history[0]
	now, found := time.Now(), false
	d := views.AdminPrice{}
	for _, h := range history {
		v := priceRow(h)
		if !found && !h.EffectiveFrom.After(now) {
			v.InForce, current, found = true, h, true
		}
		d.History = append(d.History, v)
	}
	d.Rule = priceRow(current)
	d.Form = priceFormFromRow(current)
	return d, nil
}
