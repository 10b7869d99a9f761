package job

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/tollgate/tollgate/internal/db/sqlc"
)

// CacheEventsPruneArgs deletes the cache invalidations (cache_events) older than
// cacheEventsKeep. Proxies read them within a second of their commit; the day kept
// covers any proxy that was cut off from PostgreSQL meanwhile (it reads from where it
// left off when the database returns) and leaves them to look at.
type CacheEventsPruneArgs struct{}

// Kind is the job kind and the periodic job's ID.
func (CacheEventsPruneArgs) Kind() string { return "cache_events_prune" }

// InsertOpts puts the prune on the maintenance queue.
func (CacheEventsPruneArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueMaintenance}
}

// cacheEventsKeep is how long a recorded invalidation is kept.
const cacheEventsKeep = 24 * time.Hour

// CacheEventsPruneWorker runs CacheEventsPruneArgs.
type CacheEventsPruneWorker struct {
	river.WorkerDefaults[CacheEventsPruneArgs]
	pool *pgxpool.Pool
	log  *slog.Logger
}

// NewCacheEventsPruneWorker returns the worker of CacheEventsPruneArgs.
func NewCacheEventsPruneWorker(pool *pgxpool.Pool, log *slog.Logger) *CacheEventsPruneWorker {
	return &CacheEventsPruneWorker{pool: pool, log: log}
}

// Work deletes the old rows.
func (w *CacheEventsPruneWorker) Work(ctx context.Context, _ *river.Job[CacheEventsPruneArgs]) error {
	n, err := sqlc.New().CacheEventsPrune(ctx, w.pool, time.Now().Add(-cacheEventsKeep))
	if err != nil {
		return fmt.Errorf("prune cache events: %w", err)
	}
	if n > 0 {
		w.log.Info("pruned old cache invalidations", "rows", n)
	}
	return nil
}
