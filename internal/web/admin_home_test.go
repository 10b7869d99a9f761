package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/job"
)

func TestAdminHomeAlerts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	admin, _, userID := b.adminAndUser(t)

	// A fresh install: no check yet, no exchange rate.
	res := b.get(t, admin, "/admin", nil)
	if res.status != http.StatusOK {
		t.Fatalf("status %d", res.status)
	}
	mustContain(t, res.body, "has not run yet", "No USD/CNY rate yet", "FX_SOURCE_URL")

	// A consistent ledger and a fresh rate.
	putReport := func(r job.LedgerReport) {
		t.Helper()
		raw, _ := json.Marshal(r)
		if err := b.q.SettingPut(ctx, b.db, sqlc.SettingPutParams{Key: job.LedgerCheckSetting, Value: raw}); err != nil {
			t.Fatal(err)
		}
	}
	putReport(job.LedgerReport{CheckedAt: time.Now().UTC(), Mismatches: []job.LedgerMismatch{}})
	if _, err := b.q.FxRateInsert(ctx, b.db, sqlc.FxRateInsertParams{RateMicro: 7_200_000, Source: "fx.test", FetchedAt: time.Now().Add(-20 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	res = b.get(t, admin, "/admin", nil)
	mustContain(t, res.body, "Every cached balance equals its ledger sum", "¥7.2000", "20 minutes ago")
	mustNotContain(t, res.body, `role="alert"`, "stale")

	// A mismatch is a red alert naming the user; an old rate is flagged stale.
	putReport(job.LedgerReport{CheckedAt: time.Now().UTC(), Mismatches: []job.LedgerMismatch{
		{UserID: userID, Email: userEmail, BalanceNano: 5_000_000_000, LedgerNano: 4_000_000_000},
	}})
	if _, err := b.db.Exec(ctx, "UPDATE fx_rates SET fetched_at = now() - interval '5 hours'"); err != nil {
		t.Fatal(err)
	}
	res = b.get(t, admin, "/admin", nil)
	mustContain(t, res.body, `class="alert" role="alert"`, "1 balance(s) differ from the ledger", userEmail,
		"$5.0000", "$4.0000", "+$1.0000", `id="fx-stale"`, "The exchange rate is stale", "5 hours ago")
}
