package job_test

import (
	"context"
	"testing"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/tollgate/tollgate/internal/invalidate"
	"github.com/tollgate/tollgate/internal/job"
)

// TestCacheEventsPrune: recorded invalidations older than a day go; newer ones stay.
func TestCacheEventsPrune(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	must(t, invalidate.Record(ctx, b.pool, invalidate.UserEvent(1), invalidate.UserEvent(2), invalidate.UserEvent(3)))
	_, err := b.pool.Exec(ctx, "UPDATE cache_events SET created_at = now() - interval '25 hours' WHERE ref IN ('1', '2')")
	must(t, err)
	w := job.NewCacheEventsPruneWorker(b.pool, b.log)
	must(t, w.Work(ctx, &river.Job[job.CacheEventsPruneArgs]{JobRow: &rivertype.JobRow{}}))
	var left []string
	rows, err := b.pool.Query(ctx, "SELECT ref FROM cache_events ORDER BY id")
	must(t, err)
	for rows.Next() {
		var ref string
		must(t, rows.Scan(&ref))
		left = append(left, ref)
	}
	must(t, rows.Err())
	if len(left) != 1 || left[0] != "3" {
		t.Fatalf("left after the prune: %q, want [3]", left)
	}
}
