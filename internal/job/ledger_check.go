package job

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
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
//
// Each user's ledger is summed once in full, then from a checkpoint: the sum of their
// rows created before a point Settle behind the check (migration 0006), moved only when
// they have new rows, so a run reads only the rows since the latest checkpoint and
// writes only for active users, whatever the history. Deleting a user's
// ledger_checkpoints row makes the next run recount them.
type LedgerCheckWorker struct {
	river.WorkerDefaults[LedgerCheckArgs]
	pool *pgxpool.Pool
	log  *slog.Logger
	// Settle is how far behind the check its checkpoints stay (an hour): a ledger row is
	// stamped with its transaction's start, so one still uncommitted when a checkpoint
	// passes its time would be missed by that checkpoint for good.
	Settle time.Duration
}

// NewLedgerCheckWorker returns the worker of LedgerCheckArgs.
func NewLedgerCheckWorker(pool *pgxpool.Pool, log *slog.Logger) *LedgerCheckWorker {
	return &LedgerCheckWorker{pool: pool, log: log, Settle: time.Hour}
}

// Work compares balances with the ledger, moves the checkpoints and stores the report.
// Finding mismatches is a successful check: the job fails only if it could not check or
// record.
func (w *LedgerCheckWorker) Work(ctx context.Context, _ *river.Job[LedgerCheckArgs]) error {
	q := sqlc.New()
	now := time.Now().UTC()
	cut := now.Add(-w.Settle)
	report := LedgerReport{CheckedAt: now, Mismatches: []LedgerMismatch{}}
	// One snapshot for the reads and the checkpoints they move: a debit and its balance
	// update are seen together, and a checkpoint is the sum of what was read.
	err := pgx.BeginTxFunc(ctx, w.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		rows, err := q.LedgerCheckRead(ctx, tx, cut)
		if err != nil {
			return fmt.Errorf("compare balances with ledger: %w", err)
		}
		put := sqlc.LedgerCheckpointsPutParams{Through: cut, UserIds: make([]int64, 0, len(rows)), Sums: make([]int64, 0, len(rows))}
		for _, r := range rows {
			if r.Move { // an idle user's checkpoint stays: no write per user per run
				put.UserIds = append(put.UserIds, r.ID)
				put.Sums = append(put.Sums, r.SettledNano)
			}
			if r.BalanceNano == r.LedgerNano {
				continue
			}
			w.log.Error("user balance differs from ledger", "user_id", r.ID,
				"balance_nano", r.BalanceNano, "ledger_nano", r.LedgerNano, "diff_nano", r.BalanceNano-r.LedgerNano)
			report.Mismatches = append(report.Mismatches, LedgerMismatch{
				UserID: r.ID, Email: r.Email, BalanceNano: r.BalanceNano, LedgerNano: r.LedgerNano,
			})
		}
		if err := q.LedgerCheckpointsPut(ctx, tx, put); err != nil {
			return fmt.Errorf("move ledger checkpoints: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
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
