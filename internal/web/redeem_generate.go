package web

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/money"
	"github.com/tollgate/tollgate/views"
)

// redeemGenerate creates a batch of codes and shows them in its answer, once: they are
// never stored in clear, so they cannot go through a redirect or the session.
func (s *Server) redeemGenerate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v := func(name string) string { return strings.TrimSpace(r.PostFormValue(name)) }
	form := views.RedeemBatchForm{Batch: v("batch"), Value: v("value"), Count: v("count"), Uses: v("uses"), Expires: v("expires")}
	fail := func(problem string) {
		form.Error = problem
		s.renderRedeemAdmin(w, r, http.StatusUnprocessableEntity, form, nil)
	}
	value, err := money.ParseUSD(form.Value)
	if err != nil || value <= 0 {
		fail("Enter the value of a redemption in dollars, e.g. 5 or 2.50.")
		return
	}
	n, ok := parseCount(form.Count, billing.MaxCodesPerBatch)
	if !ok || n < 1 {
		fail("Enter how many codes to generate, from 1 to " + strconv.Itoa(billing.MaxCodesPerBatch) + ".")
		return
	}
	uses, ok := parseCount(form.Uses, billing.MaxCodeUses)
	if !ok || uses < 1 {
		fail("Enter how many users may redeem each code (at least 1).")
		return
	}
	var expires *time.Time
	if form.Expires != "" {
		day, err := time.Parse(time.DateOnly, form.Expires)
		if err != nil {
			fail("Enter the expiry as a date, YYYY-MM-DD.")
			return
		}
		end := day.AddDate(0, 0, 1) // codes work through that whole UTC day
		expires = &end
	}

	var codes []string
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		codes, err = billing.GenerateCodes(ctx, tx, form.Batch, int(n), value, int(uses), expires, currentUser(r).ID)
		if err != nil {
			return err
		}
		return s.auditAdmin(ctx, tx, r, "redeem.generate", "redeem_batch", strings.TrimSpace(form.Batch), map[string]any{
			"codes": n, "value_nano": value, "max_uses": uses, "expires_at": expires,
		})
	})
	var invalid *billing.BatchError
	if errors.As(err, &invalid) {
		fail(invalid.Problem)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	generated := &views.GeneratedCodes{Batch: strings.TrimSpace(form.Batch), ValueNano: value, Uses: int(uses), Codes: codes}
	s.renderRedeemAdmin(w, r, http.StatusOK, views.RedeemBatchForm{Count: "10", Uses: "1"}, generated)
}
