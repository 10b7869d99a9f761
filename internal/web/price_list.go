package web

import (
	"net/http"
	"strings"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/views"
)

// priceList shows the row in force of every price rule. ?q= filters by provider, model
// or note; htmx requests (the filter box as it is typed) get just the table body.
func (s *Server) priceList(w http.ResponseWriter, r *http.Request) {
	rows, err := s.q.PriceListCurrent(r.Context(), s.db)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	query := strings.TrimSpace(r.URL.Query().Get("q"))
	d := views.AdminPrices{Query: query, Total: len(rows)}
	needle := strings.ToLower(query)
	for _, p := range rows {
		label := p.Provider + " " + p.Pattern + " " + p.Note
		if p.Match == "prefix" && p.Pattern == "" {
			label += " fallback"
		}
		if needle != "" && !strings.Contains(strings.ToLower(label), needle) {
			continue
		}
		row := priceRow(sqlc.Price{
			ID: p.ID, Provider: p.Provider, Pattern: p.Pattern, Match: p.Match, EffectiveFrom: p.EffectiveFrom,
			InputPico: p.InputPico, OutputPico: p.OutputPico, CacheWrite5mPico: p.CacheWrite5mPico,
			CacheWrite1hPico: p.CacheWrite1hPico, CacheReadPico: p.CacheReadPico, TierThreshold: p.TierThreshold, Note: p.Note,
		})
		row.Versions = p.Versions
		d.Rows = append(d.Rows, row)
	}
	if isHTMX(r) {
		s.render(w, r, http.StatusOK, views.PriceRows(d))
		return
	}
	s.page(w, r, http.StatusOK, "Prices", "admin", views.PricesContent(d))
}
