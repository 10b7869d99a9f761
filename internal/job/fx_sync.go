package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/invalidate"
)

// FXSyncArgs fetches the USD/CNY exchange rate from FX_SOURCE_URL and stores it with its
// fetch time. RMB-pegged groups are billed at the latest stored rate, so a failed fetch
// changes nothing: the last good rate stays in use and the console flags it once it is
// older than billing.FXStaleAfter.
type FXSyncArgs struct{}

// Kind is the job kind and the periodic job's ID.
func (FXSyncArgs) Kind() string { return "fx_sync" }

// InsertOpts keeps retries few: the next hourly run is as good as a late retry.
func (FXSyncArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueDefault, MaxAttempts: 3}
}

// FXSyncWorker runs FXSyncArgs.
type FXSyncWorker struct {
	river.WorkerDefaults[FXSyncArgs]
	pool   *pgxpool.Pool
	log    *slog.Logger
	source string
	client *http.Client
	onRate func(ctx context.Context)
}

// NewFXSyncWorker returns the worker of FXSyncArgs reading source with client (nil: a
// client with a 15-second timeout).
func NewFXSyncWorker(pool *pgxpool.Pool, log *slog.Logger, source string, client *http.Client) *FXSyncWorker {
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	return &FXSyncWorker{pool: pool, log: log, source: source, client: client}
}

// errNoFXSource cancels the job (retrying cannot help) when FX_SOURCE_URL is not set.
var errNoFXSource = errors.New("FX_SOURCE_URL is not set: RMB-pegged groups keep the last stored rate")

// Work fetches and stores the rate. A failure is logged and returned, so River records
// it on the job; nothing is written, and the last good rate stays in force.
func (w *FXSyncWorker) Work(ctx context.Context, _ *river.Job[FXSyncArgs]) error {
	if w.source == "" {
		w.log.Warn("exchange rate not synced", "error", errNoFXSource)
		return river.JobCancel(errNoFXSource)
	}
	u, err := url.Parse(w.source)
	if err != nil || u.Host == "" {
		return river.JobCancel(fmt.Errorf("FX_SOURCE_URL %q is not an absolute URL", w.source))
	}
	rate, err := billing.FetchUSDCNY(ctx, w.client, w.source)
	if err != nil {
		w.log.Error("exchange rate sync failed; the last good rate stays in use", "source", u.Host, "error", err)
		return err
	}
	// Proxies price with the rate: the change is recorded for them with the rate itself.
	var row sqlc.FxRate
	err = pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		var err error
		if row, err = sqlc.New().FxRateInsert(ctx, tx, sqlc.FxRateInsertParams{RateMicro: rate, Source: u.Host, FetchedAt: time.Now().UTC()}); err != nil {
			return err
		}
		return invalidate.Record(ctx, tx, invalidate.Event{Kind: invalidate.Prices})
	})
	if err != nil {
		return fmt.Errorf("store exchange rate: %w", err)
	}
	w.log.Info("exchange rate synced", "usd_cny_micro", row.RateMicro, "source", row.Source)
	if w.onRate != nil {
		w.onRate(ctx)
	}
	return nil
}
