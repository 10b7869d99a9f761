package job

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/tollgate/tollgate/internal/db/sqlc"
)

// UsageRollupArgs rebuilds the daily usage rollup from the hourly one, which the
// ingestion keeps as it stores events (usage.Ingest). Without a window (the schedule) it
// takes the UTC days of the previous and the current hour. An explicit window also
// rebuilds the hourly rows of the hours in [From, To) from usage_events first — a repair,
// e.g. after restoring events from a backup; it is widened to whole hours, and holds off
// the ingestion's additions to the rollup while it runs.
type UsageRollupArgs struct {
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
}

// Kind is the job kind and the periodic job's ID.
func (UsageRollupArgs) Kind() string { return "usage_rollup" }

// InsertOpts puts the rollup on the maintenance queue.
func (UsageRollupArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueMaintenance}
}

// repair reports whether the args name a window (hours rebuilt from the events) rather
// than the schedule's default.
func (a UsageRollupArgs) repair() bool { return !a.From.IsZero() || !a.To.IsZero() }

// window returns the hours to rebuild, now being the time the job runs.
func (a UsageRollupArgs) window(now time.Time) (from, to time.Time, err error) {
	if !a.repair() {
		hour := now.Truncate(time.Hour)
		return hour.Add(-time.Hour), hour.Add(time.Hour), nil
	}
	from, to = a.From.Truncate(time.Hour), a.To.Truncate(time.Hour)
	if to.Before(a.To) {
		to = to.Add(time.Hour)
	}
	if !from.Before(to) {
		return from, to, fmt.Errorf("usage rollup window [%s, %s) is empty", a.From.Format(time.RFC3339), a.To.Format(time.RFC3339))
	}
	return from, to, nil
}

// UsageRollupWorker replaces the rollup rows of a window with sums recomputed from
// usage_hourly (days) and, for an explicit window, from usage_events (hours). Replacing
// rather than incrementing makes every run idempotent, so the schedule may overlap,
// repeat or be re-run by hand without double counting. Its cost is bounded by the
// rollup's rows, not by the traffic: the hourly rows are the ingestion's.
type UsageRollupWorker struct {
	river.WorkerDefaults[UsageRollupArgs]
	pool *pgxpool.Pool
	log  *slog.Logger
}

// NewUsageRollupWorker returns the worker of UsageRollupArgs.
func NewUsageRollupWorker(pool *pgxpool.Pool, log *slog.Logger) *UsageRollupWorker {
	return &UsageRollupWorker{pool: pool, log: log}
}

// Timeout allows a hand-started rebuild of a long window more than River's default minute.
func (w *UsageRollupWorker) Timeout(*river.Job[UsageRollupArgs]) time.Duration {
	return 10 * time.Minute
}

// Work rebuilds, for an explicit window, its hourly rows from the events, then the daily
// rows of the UTC days the window touches from their hours, in one transaction: a day
// always equals the sum of its hours.
func (w *UsageRollupWorker) Work(ctx context.Context, job *river.Job[UsageRollupArgs]) error {
	from, to, err := job.Args.window(time.Now())
	if err != nil {
		return river.JobCancel(err) // retrying cannot fix the arguments
	}
	fromDay, toDay := days(from, to)
	q := sqlc.New()
	var hours, daily int64
	err = pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		var err error
		if job.Args.repair() {
			// The ingestion adds to these rows as it stores events: without the lock, an
			// addition committed after the rebuild read the events would be overwritten.
			if err := q.UsageHourlyLock(ctx, tx); err != nil {
				return fmt.Errorf("lock the hourly usage rollup: %w", err)
			}
			hours, err = q.UsageHourlyRebuild(ctx, tx, sqlc.UsageHourlyRebuildParams{FromHour: from, ToHour: to})
			if err != nil {
				return fmt.Errorf("rebuild hourly usage rollup for [%s, %s): %w", from.Format(time.RFC3339), to.Format(time.RFC3339), err)
			}
		}
		daily, err = q.UsageDailyRebuild(ctx, tx, sqlc.UsageDailyRebuildParams{FromDay: fromDay, ToDay: toDay})
		if err != nil {
			return fmt.Errorf("rebuild daily usage rollup for [%s, %s): %w", fromDay.Format(time.DateOnly), toDay.Format(time.DateOnly), err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.log.Debug("usage rollup rebuilt", "from", from, "to", to, "hourly_rows", hours, "daily_rows", daily)
	return nil
}

// days widens an hour window to the UTC days that contain it.
func days(from, to time.Time) (fromDay, toDay time.Time) {
	fromDay = truncateDay(from)
	toDay = truncateDay(to)
	if toDay.Before(to) {
		toDay = toDay.AddDate(0, 0, 1)
	}
	return fromDay, toDay
}

func truncateDay(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}
