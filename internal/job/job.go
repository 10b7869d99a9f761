// Package job runs Tollgate's background work on River: the workers, the queues they
// use and the periodic schedule. cmd/worker starts the client; the console reads
// Schedule to show the periodic jobs and inserts their Args for "run now".
package job

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/tollgate/tollgate/internal/account"
)

// Queues. Maintenance work (rollups, checks) has its own few workers so that a slow
// rebuild never delays time-sensitive jobs such as token refreshes.
const (
	QueueDefault     = river.QueueDefault
	QueueMaintenance = "maintenance"
)

// Periodic is one periodic job. ID is stable across releases (the dashboard and River's
// schedule key on it) and equals the job's kind.
type Periodic struct {
	ID         string
	Every      time.Duration
	RunOnStart bool
	Args       river.JobArgs // inserted on schedule, and by "run now"
}

// Schedule lists the periodic jobs. River runs them on the elected leader only, so any
// number of workers may share one schedule; NewClient makes each run once per period
// even across a change of leader (see aligned).
func Schedule() []Periodic {
	return []Periodic{
		// RunOnStart: dashboards should not wait a minute after a deploy.
		{ID: UsageRollupArgs{}.Kind(), Every: time.Minute, RunOnStart: true, Args: UsageRollupArgs{}},
		{ID: LedgerCheckArgs{}.Kind(), Every: 10 * time.Minute, Args: LedgerCheckArgs{}},
		// RunOnStart: a fresh install should not wait an hour for its first rate.
		{ID: FXSyncArgs{}.Kind(), Every: time.Hour, RunOnStart: true, Args: FXSyncArgs{}},
		// RunOnStart: tokens that expired while no worker ran are refreshed at once.
		{ID: OAuthRefreshArgs{}.Kind(), Every: time.Minute, RunOnStart: true, Args: OAuthRefreshArgs{}},
		{ID: CacheEventsPruneArgs{}.Kind(), Every: time.Hour, Args: CacheEventsPruneArgs{}},
	}
}

// Config is what the workers need beyond the database.
type Config struct {
	// FXSourceURL is where the fx_sync job reads USD/CNY (FX_SOURCE_URL); empty cancels
	// each run with a logged warning.
	FXSourceURL string
	// HTTPClient fetches the exchange rate; nil means one with a 15-second timeout.
	HTTPClient *http.Client
	// OnFXRate runs after a new rate is stored (the worker announces it so proxies
	// reload their price snapshot at once); nil does nothing.
	OnFXRate func(ctx context.Context)
	// Refresher redeems OAuth refresh tokens; nil leaves OAuth tokens to the proxy's
	// refresh on a 401.
	Refresher *account.Refresher
	// OAuthRefreshAhead: tokens expiring within this are refreshed (OAUTH_REFRESH_AHEAD).
	OAuthRefreshAhead time.Duration
	// Every overrides periodic jobs' intervals by ID (OAUTH_REFRESH_INTERVAL; tests run
	// schedules faster).
	Every map[string]time.Duration
}

// NewClient returns a River client with every worker and the periodic schedule; the
// caller starts and stops it.
func NewClient(pool *pgxpool.Pool, log *slog.Logger, cfg Config) (*river.Client[pgx.Tx], error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, NewUsageRollupWorker(pool, log))
	river.AddWorker(workers, NewLedgerCheckWorker(pool, log))
	fx := NewFXSyncWorker(pool, log, cfg.FXSourceURL, cfg.HTTPClient)
	fx.onRate = cfg.OnFXRate
	river.AddWorker(workers, fx)
	river.AddWorker(workers, NewOAuthRefreshWorker(cfg.Refresher, cfg.OAuthRefreshAhead, log))
	river.AddWorker(workers, NewCacheEventsPruneWorker(pool, log))

	var periodic []*river.PeriodicJob
	for _, p := range Schedule() {
		if every := cfg.Every[p.ID]; every > 0 {
			p.Every = every
		}
		// Unique by period, here and not in the Args' own InsertOpts, so that "run now"
		// inserts stay free to run at any time.
		periodic = append(periodic, river.NewPeriodicJob(
			aligned(p.Every),
			func() (river.JobArgs, *river.InsertOpts) {
				return p.Args, &river.InsertOpts{UniqueOpts: river.UniqueOpts{ByPeriod: p.Every}}
			},
			&river.PeriodicJobOpts{ID: p.ID, RunOnStart: p.RunOnStart},
		))
	}
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Logger:       log,
		Workers:      workers,
		PeriodicJobs: periodic,
		Queues: map[string]river.QueueConfig{
			QueueDefault:     {MaxWorkers: 20},
			QueueMaintenance: {MaxWorkers: 2},
		},
		// A graceful stop lets running jobs finish for this long, then cancels them.
		SoftStopTimeout: 10 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("create river client: %w", err)
	}
	return client, nil
}

// aligned schedules a job at the multiples of every (UTC, counted from Go's zero time as
// time.Truncate does), not every interval from whenever the leader started.
//
// With River's plain interval schedule, a newly elected leader runs the RunOnStart jobs at
// once: a leader that stops gracefully hands over within a second, so a job that ran just
// before ran again just after — twice in one interval. Here every run falls in the period
// it is scheduled for, and the insert is unique by that period (UniqueOpts.ByPeriod, which
// truncates the scheduled time the same way): a new leader's RunOnStart run is skipped by
// PostgreSQL when the old leader already ran the period, and still runs when the period
// had no run yet (a fresh start, or a leader that died before its turn). So each period
// gets one run at most, whatever the number of workers and leader changes.
func aligned(every time.Duration) river.PeriodicSchedule { return alignedSchedule(every) }

type alignedSchedule time.Duration

func (a alignedSchedule) Next(t time.Time) time.Time {
	every := time.Duration(a)
	return t.Truncate(every).Add(every)
}
