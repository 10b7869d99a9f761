package job_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/tollgate/tollgate/internal/billing"
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

// TestLedgerCheckFromCheckpoints: after its first run the check sums each user's ledger
// from a checkpoint plus the rows since (migration 0006): later rows are counted, a user
// without a checkpoint is summed in full, a wrong checkpoint shows as a mismatch (so the
// sum really comes from it) and deleting it makes the next run recount; checkpoints never
// move back.
func TestLedgerCheckFromCheckpoints(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	q := sqlc.New()
	w := job.NewLedgerCheckWorker(b.pool, b.log)
	w.Settle = 0
	work := func() job.LedgerReport {
		t.Helper()
		must(t, w.Work(ctx, &river.Job[job.LedgerCheckArgs]{JobRow: &rivertype.JobRow{}}))
		return ledgerReport(t, b)
	}
	checkpoint := func(user int64) (sum int64, through time.Time) {
		t.Helper()
		must(t, b.pool.QueryRow(ctx, "SELECT sum_nano, through FROM ledger_checkpoints WHERE user_id = $1", user).Scan(&sum, &through))
		return sum, through
	}

	b.ingest(t, 1_000, time.Now().Add(-time.Minute))
	if r := work(); len(r.Mismatches) != 0 {
		t.Fatalf("first run: %+v", r.Mismatches)
	}
	if sum, _ := checkpoint(b.user); sum != -1_000 {
		t.Fatalf("checkpoint %d after the first run, want -1000", sum)
	}
	b.ingest(t, 250, time.Now())
	if r := work(); len(r.Mismatches) != 0 {
		t.Fatalf("second run: %+v", r.Mismatches)
	}
	if sum, _ := checkpoint(b.user); sum != -1_250 {
		t.Fatalf("checkpoint %d after the second run, want -1250", sum)
	}

	// A user who appears after the checkpoints exist is summed in full.
	g, err := q.GroupInsert(ctx, b.pool, sqlc.GroupInsertParams{Name: "other"})
	must(t, err)
	u2, err := q.UserInsert(ctx, b.pool, sqlc.UserInsertParams{Email: "v@example.com", PasswordHash: "x", Role: "user", GroupID: g.ID})
	must(t, err)
	for i, amount := range []int64{5_000, -1_200} {
		must(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			_, err := billing.Post(ctx, tx, billing.Entry{UserID: u2.ID, Amount: amount, Kind: "adjust", Ref: fmt.Sprintf("t%d", i)})
			return err
		}))
	}
	if r := work(); len(r.Mismatches) != 0 {
		t.Fatalf("with a new user: %+v", r.Mismatches)
	}
	sum2, through2 := checkpoint(u2.ID)
	if sum2 != 3_800 {
		t.Fatalf("the new user's checkpoint is %d, want 3800", sum2)
	}
	// Only users with new rows have their checkpoint moved (no write per idle user).
	b.ingest(t, 5, time.Now())
	if r := work(); len(r.Mismatches) != 0 {
		t.Fatalf("with one user active: %+v", r.Mismatches)
	}
	if sum, _ := checkpoint(b.user); sum != -1_255 {
		t.Fatalf("the active user's checkpoint is %d, want -1255", sum)
	}
	if sum, after := checkpoint(u2.ID); sum != 3_800 || !after.Equal(through2) {
		t.Fatalf("the idle user's checkpoint moved: %d at %s, was %d at %s", sum, after, sum2, through2)
	}

	// The sum is the checkpoint's: a wrong one is a mismatch; without it, a recount.
	_, err = b.pool.Exec(ctx, "UPDATE ledger_checkpoints SET sum_nano = sum_nano + 7 WHERE user_id = $1", b.user)
	must(t, err)
	r := work()
	if len(r.Mismatches) != 1 || r.Mismatches[0].UserID != b.user || r.Mismatches[0].LedgerNano != -1_248 {
		t.Fatalf("with a wrong checkpoint: %+v, want the user's ledger read as -1248", r.Mismatches)
	}
	_, err = b.pool.Exec(ctx, "DELETE FROM ledger_checkpoints WHERE user_id = $1", b.user)
	must(t, err)
	if r := work(); len(r.Mismatches) != 0 {
		t.Fatalf("after deleting the checkpoint: %+v", r.Mismatches)
	}

	// A run whose cut is behind the latest checkpoint (a longer settle time, a worker
	// whose clock is behind) moves none: not the later checkpoints back, and not a user
	// without one to a point behind the others' (their rows between the two would never
	// be read again).
	_, through := checkpoint(u2.ID)
	_, err = b.pool.Exec(ctx, "DELETE FROM ledger_checkpoints WHERE user_id = $1", b.user)
	must(t, err)
	w.Settle = 2 * time.Hour
	if r := work(); len(r.Mismatches) != 0 {
		t.Fatalf("a run with a cut behind the checkpoints: %+v", r.Mismatches)
	}
	if _, after := checkpoint(u2.ID); !after.Equal(through) {
		t.Fatalf("checkpoint moved back from %s to %s", through, after)
	}
	var n int
	must(t, b.pool.QueryRow(ctx, "SELECT count(*) FROM ledger_checkpoints WHERE user_id = $1", b.user).Scan(&n))
	if n != 0 {
		t.Fatalf("a user without a checkpoint got one behind the latest")
	}
	w.Settle = 0
	if r := work(); len(r.Mismatches) != 0 {
		t.Fatalf("the run after it: %+v", r.Mismatches)
	}
}
