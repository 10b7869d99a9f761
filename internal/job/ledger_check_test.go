package job_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/job"
)

func ledgerReport(t *testing.T, b *testBundle) job.LedgerReport {
	t.Helper()
	s, err := sqlc.New().SettingGet(context.Background(), b.pool, job.LedgerCheckSetting)
	must(t, err)
	var r job.LedgerReport
	must(t, json.Unmarshal(s.Value, &r))
	if r.Mismatches == nil {
		t.Fatalf("report %s: mismatches must be a list, even when empty", s.Value)
	}
	return r
}

func TestLedgerCheckDetectsMismatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.ingest(t, 1_000, time.Now().Add(-time.Minute), time.Now())
	w := job.NewLedgerCheckWorker(b.pool, b.log)
	work := func() {
		t.Helper()
		must(t, w.Work(ctx, &river.Job[job.LedgerCheckArgs]{JobRow: &rivertype.JobRow{}}))
	}

	work()
	r := ledgerReport(t, b)
	if len(r.Mismatches) != 0 || time.Since(r.CheckedAt) > time.Minute {
		t.Fatalf("consistent ledger reported as %+v", r)
	}

	// Someone edits the cached balance behind the ledger's back.
	_, err := b.pool.Exec(ctx, "UPDATE users SET balance_nano = balance_nano + 5 WHERE id = $1", b.user)
	must(t, err)
	work()
	r = ledgerReport(t, b)
	want := job.LedgerMismatch{UserID: b.user, Email: "u@example.com", BalanceNano: -1_995, LedgerNano: -2_000}
	if len(r.Mismatches) != 1 || r.Mismatches[0] != want {
		t.Fatalf("mismatches %+v, want [%+v]", r.Mismatches, want)
	}
	if logs := b.logs.String(); !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "diff_nano=5") {
		t.Fatalf("mismatch not logged as an error:\n%s", logs)
	}
}
