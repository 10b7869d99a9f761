package web

import (
	"net/http"
	"time"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/views"
)

// dashboardRows is how many usage and ledger rows the dashboard shows.
const dashboardRows = 10

func (s *Server) dashboardShow(w http.ResponseWriter, r *http.Request) {
	ctx, user := r.Context(), currentUser(r)
	now := time.Now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)

	summary, err := s.q.UsageEventSummaryByUserSince(ctx, s.db, sqlc.UsageEventSummaryByUserSinceParams{UserID: user.ID, Since: today})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	usage, err := s.q.UsageEventListByUser(ctx, s.db, sqlc.UsageEventListByUserParams{UserID: user.ID, MaxRows: dashboardRows})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	ledger, err := s.q.WalletTxListByUser(ctx, s.db, sqlc.WalletTxListByUserParams{UserID: user.ID, MaxRows: dashboardRows})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	keys, err := s.q.APIKeyListByUser(ctx, s.db, user.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	active := 0
	for _, k := range keys {
		if k.Status == "active" {
			active++
		}
	}

	s.page(w, r, http.StatusOK, "Dashboard", "dashboard", views.DashboardContent(views.Dashboard{
		BalanceNano:     user.BalanceNano, // read with the user on this request
		ProxyURL:        s.proxyURL,
		TodayRequests:   summary.Requests,
		TodayBilledNano: summary.BilledNano,
		ActiveKeys:      active,
		Usage:           usageRows(usage),
		Ledger:          ledgerRows(ledger),
	}))
}
