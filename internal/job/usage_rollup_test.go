package job_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/tollgate/tollgate/internal/job"
)

func workRollup(t *testing.T, w *job.UsageRollupWorker, args job.UsageRollupArgs) error {
	t.Helper()
	return w.Work(context.Background(), &river.Job[job.UsageRollupArgs]{JobRow: &rivertype.JobRow{}, Args: args})
}

func TestUsageRollupRebuildsRecentHours(t *testing.T) {
	t.Parallel()
	b := setup(t)
	hour := time.Now().UTC().Truncate(time.Hour)
	b.ingest(t, 100, hour.Add(-30*time.Minute), hour.Add(-20*time.Minute)) // previous hour
	b.ingest(t, 7, hour)                                                   // current hour
	b.ingest(t, 1, hour.Add(-3*time.Hour+10*time.Minute))                  // outside the default window
	w := job.NewUsageRollupWorker(b.pool, b.log)

	must(t, workRollup(t, w, job.UsageRollupArgs{}))
	want := []string{
		hour.Add(-time.Hour).Format(time.RFC3339) + " n=2 billed=200 in=200 cache_read=10",
		hour.Format(time.RFC3339) + " n=1 billed=7 in=100 cache_read=5",
	}
	if got := b.rollup(t); !slices.Equal(got, want) {
		t.Fatalf("rollup\n got %q\nwant %q", got, want)
	}

	// Re-running replaces the rows: nothing is counted twice.
	must(t, workRollup(t, w, job.UsageRollupArgs{}))
	if got := b.rollup(t); !slices.Equal(got, want) {
		t.Fatalf("after a second run\n got %q\nwant %q", got, want)
	}

	// A late event of the previous hour is picked up by the next run.
	b.ingest(t, 50, hour.Add(-10*time.Minute))
	must(t, workRollup(t, w, job.UsageRollupArgs{}))
	want[0] = hour.Add(-time.Hour).Format(time.RFC3339) + " n=3 billed=250 in=300 cache_read=15"
	if got := b.rollup(t); !slices.Equal(got, want) {
		t.Fatalf("after a late event\n got %q\nwant %q", got, want)
	}

	// An explicit window, widened to whole hours, re-runs an older hour.
	old := hour.Add(-3 * time.Hour)
	must(t, workRollup(t, w, job.UsageRollupArgs{From: old.Add(5 * time.Minute), To: old.Add(6 * time.Minute)}))
	want = append([]string{old.Format(time.RFC3339) + " n=1 billed=1 in=100 cache_read=5"}, want...)
	if got := b.rollup(t); !slices.Equal(got, want) {
		t.Fatalf("after an explicit window\n got %q\nwant %q", got, want)
	}

	// An empty window is cancelled, not retried.
	err := workRollup(t, w, job.UsageRollupArgs{From: old, To: old})
	var cancel *river.JobCancelError
	if !errors.As(err, &cancel) {
		t.Fatalf("empty window: err = %v, want a JobCancel", err)
	}
}

// TestJobsRunOnRiver runs the real client: the rollup runs on start, and jobs inserted
// by hand (the console's "run now") are worked on the maintenance queue.
func TestJobsRunOnRiver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	hour := time.Now().UTC().Truncate(time.Hour)
	old := hour.Add(-5 * time.Hour)
	b.ingest(t, 40, hour.Add(-time.Minute), old.Add(time.Minute))

	client, err := job.NewClient(b.pool, b.log, job.Config{})
	must(t, err)
	events, unsubscribe := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled)
	defer unsubscribe()
	must(t, client.Start(ctx))
	defer func() {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		must(t, client.Stop(stopCtx))
	}()

	wait := func(match func(*rivertype.JobRow) bool) *rivertype.JobRow {
		t.Helper()
		timeout := time.After(15 * time.Second)
		for {
			select {
			case ev := <-events:
				if !match(ev.Job) {
					continue
				}
				if ev.Kind != river.EventKindJobCompleted {
					t.Fatalf("job %s %d ended %s: %v", ev.Job.Kind, ev.Job.ID, ev.Kind, ev.Job.Errors)
				}
				return ev.Job
			case <-timeout:
				t.Fatal("timed out waiting for a job")
			}
		}
	}

	started := wait(func(j *rivertype.JobRow) bool { return j.Kind == "usage_rollup" })
	if started.Queue != job.QueueMaintenance {
		t.Errorf("rollup ran on queue %q, want %q", started.Queue, job.QueueMaintenance)
	}
	want := []string{hour.Add(-time.Hour).Format(time.RFC3339) + " n=1 billed=40 in=100 cache_read=5"}
	if got := b.rollup(t); !slices.Equal(got, want) {
		t.Fatalf("rollup on start\n got %q\nwant %q", got, want)
	}

	res, err := client.Insert(ctx, job.UsageRollupArgs{From: old, To: old.Add(time.Hour)}, nil)
	must(t, err)
	wait(func(j *rivertype.JobRow) bool { return j.ID == res.Job.ID })
	want = append([]string{old.Format(time.RFC3339) + " n=1 billed=40 in=100 cache_read=5"}, want...)
	if got := b.rollup(t); !slices.Equal(got, want) {
		t.Fatalf("rollup of an explicit window\n got %q\nwant %q", got, want)
	}

	res, err = client.Insert(ctx, job.LedgerCheckArgs{}, nil)
	must(t, err)
	wait(func(j *rivertype.JobRow) bool { return j.ID == res.Job.ID })
	if r := ledgerReport(t, b); len(r.Mismatches) != 0 {
		t.Fatalf("ledger check found %+v on a consistent ledger", r.Mismatches)
	}
}

func TestScheduleIDsAreStable(t *testing.T) {
	t.Parallel()
	var got []string
	for _, p := range job.Schedule() {
		if p.ID != p.Args.Kind() {
			t.Errorf("periodic job %s inserts kind %s", p.ID, p.Args.Kind())
		}
		got = append(got, p.ID+" "+p.Every.String())
	}
	// The IDs are a contract with the jobs dashboard and River's schedule: never rename.
	want := []string{"usage_rollup 1m0s", "ledger_check 10m0s", "fx_sync 1h0m0s"}
	if !slices.Equal(got, want) {
		t.Fatalf("schedule %q, want %q", got, want)
	}
}
