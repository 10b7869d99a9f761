package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/job"
	"github.com/tollgate/tollgate/views"
)

func (s *Server) adminHome(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d := views.AdminHome{}
	var err error
	if d.Users, err = s.q.UserCount(ctx, s.db); err != nil {
		s.serverError(w, r, err)
		return
	}
	if d.ActiveKeys, err = s.q.APIKeyCountActive(ctx, s.db); err != nil {
		s.serverError(w, r, err)
		return
	}
	groups, err := s.q.GroupList(ctx, s.db)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	rules, err := s.q.PriceListCurrent(ctx, s.db)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	d.Groups, d.PriceRules = int64(len(groups)), int64(len(rules))
	if d.LedgerCheck, err = s.ledgerCheck(ctx); err != nil {
		s.serverError(w, r, err)
		return
	}
	if d.FX, err = s.fxStatus(ctx); err != nil {
		s.serverError(w, r, err)
		return
	}
	s.page(w, r, http.StatusOK, "Admin", "admin", views.AdminHomeContent(d))
}

// ledgerCheck reads the last report of the ledger_check job.
func (s *Server) ledgerCheck(ctx context.Context) (views.LedgerCheck, error) {
	setting, err := s.q.SettingGet(ctx, s.db, job.LedgerCheckSetting)
	if errors.Is(err, pgx.ErrNoRows) {
		return views.LedgerCheck{}, nil
	}
	if err != nil {
		return views.LedgerCheck{}, err
	}
	var rep job.LedgerReport
	if err := json.Unmarshal(setting.Value, &rep); err != nil {
		return views.LedgerCheck{}, fmt.Errorf("decode ledger check report: %w", err)
	}
	c := views.LedgerCheck{Ran: true, CheckedAt: rep.CheckedAt}
	for _, m := range rep.Mismatches {
		c.Mismatches = append(c.Mismatches, views.LedgerMismatch(m))
	}
	return c, nil
}
