package job

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/tollgate/tollgate/internal/db/sqlc"
)

// LedgerCheckSetting is the settings key holding the last LedgerReport.
const LedgerCheckSetting = "ledger_check"

// LedgerCheckArgs proves each user's cached balance equal to the sum of their ledger.
type LedgerCheckArgs struct{}

// Kind is the job kind and the periodic job's ID.
func (LedgerCheckArgs) Kind() string { return "ledger_check" }

// InsertOpts puts the check on the maintenance queue.
func (LedgerCheckArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueMaintenance}
}

// LedgerReport is the outcome of the last ledger check, stored as JSON in settings under
// LedgerCheckSetting for the console to show and alert on.
type LedgerReport struct {
	CheckedAt  time.Time        `json:"checked_at"`
	Mismatches []LedgerMismatch `json:"mismatches"`
}

// LedgerMismatch is a user whose cached balance differs from their ledger sum.
type LedgerMismatch struct {
	UserID      int64  `json:"user_id"`
	Email       string `json:"email"`
	BalanceNano int64  `json:"balance_nano"`
	LedgerNano  int64  `json:"ledger_nano"`
}

// LedgerCheckWorker runs the ledger check. The balance column is a cache that only the
// ledger's own transactions may move; a mismatch means a bug or a hand edit, so it is
// logged as an error and recorded, never corrected automatically.
type LedgerCheckWorker struct {
	river.WorkerDefaults[LedgerCheckArgs]
	pool *pgxpool.Pool
	log  *slog.Logger
}

// NewLedgerCheckWorker returns the worker of LedgerCheckArgs.
func NewLedgerCheckWorker(pool *pgxpool.Pool, log *slog.Logger) *LedgerCheckWorker {
	return &LedgerCheckWorker{pool: pool, log: log}
}

// Work compares balances with the ledger and stores the report. Finding mismatches is a
// successful check: the job fails only if it could not check or record.
func (w *LedgerCheckWorker) Work(ctx context.Context, _ *river.Job[LedgerCheckArgs]) error {
	q := sqlc.New()
	// One statement, one snapshot: a debit and its balance update are seen together.
	rows, err := q.UserBalanceMismatches(ctx, w.pool)
	if err != nil {
		return fmt.Errorf("compare balances with ledger: %w", err)
	}
	report := LedgerReport{CheckedAt: time.Now().UTC(), Mismatches: make([]LedgerMismatch, 0, len(rows))}
	for _, r := range rows {
		w.log.Error("user balance differs from ledger", "user_id", r.ID,
			"balance_nano", r.BalanceNano, "ledger_nano", r.LedgerNano, "diff_nano", r.BalanceNano-r.LedgerNano)
		report.Mismatches = append(report.Mismatches, LedgerMismatch{
			UserID: r.ID, Email: r.Email, BalanceNano: r.BalanceNano, LedgerNano: r.LedgerNano,
		})
	}
	value, err := json.Marshal(report)
	if err != nil {
		return fmt.Errorf("encode ledger report: %w", err)
	}
	if err := q.SettingPut(ctx, w.pool, sqlc.SettingPutParams{Key: LedgerCheckSetting, Value: value}); err != nil {
		return fmt.Errorf("store ledger report: %w", err)
	}
	return nil
}
