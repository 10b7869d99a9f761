package job_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/tollgate/tollgate/internal/job"
	"github.com/tollgate/tollgate/internal/usage"
)

func workRollup(t *testing.T, w *job.UsageRollupWorker, args job.UsageRollupArgs) error {
	t.Helper()
	return w.Work(context.Background(), &river.Job[job.UsageRollupArgs]{JobRow: &rivertype.JobRow{}, Args: args})
}

// TestUsageRollupKeptByIngestion: the hourly rollup is kept by the ingestion as it stores
// events (replays add nothing), the scheduled run leaves it as it is, and an explicit
// window rebuilds it from the events (a repair).
func TestUsageRollupKeptByIngestion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	hour := time.Now().UTC().Truncate(time.Hour)
	old := hour.Add(-3 * time.Hour)
	b.ingest(t, 100, hour.Add(-30*time.Minute), hour.Add(-20*time.Minute)) // previous hour
	b.ingest(t, 7, hour)                                                   // current hour
	b.ingest(t, 1, old.Add(10*time.Minute))                                // an older hour
	want := []string{
		old.Format(time.RFC3339) + " n=1 billed=1 in=100 cache_read=5",
		hour.Add(-time.Hour).Format(time.RFC3339) + " n=2 billed=200 in=200 cache_read=10",
		hour.Format(time.RFC3339) + " n=1 billed=7 in=100 cache_read=5",
	}
	if got := b.rollup(t); !slices.Equal(got, want) {
		t.Fatalf("rollup after ingestion\n got %q\nwant %q", got, want)
	}
	// A replayed batch stores nothing and adds nothing.
	b.ingest(t, 100, hour.Add(-30*time.Minute), hour.Add(-20*time.Minute))
	if got := b.rollup(t); !slices.Equal(got, want) {
		t.Fatalf("after a replay\n got %q\nwant %q", got, want)
	}
	// A late event of the previous hour is in its row at once.
	b.ingest(t, 50, hour.Add(-10*time.Minute))
	want[1] = hour.Add(-time.Hour).Format(time.RFC3339) + " n=3 billed=250 in=300 cache_read=15"
	if got := b.rollup(t); !slices.Equal(got, want) {
		t.Fatalf("after a late event\n got %q\nwant %q", got, want)
	}

	// The scheduled run rebuilds the days only; the hours stay as the ingestion left them.
	w := job.NewUsageRollupWorker(b.pool, b.log)
	must(t, workRollup(t, w, job.UsageRollupArgs{}))
	must(t, workRollup(t, w, job.UsageRollupArgs{}))
	if got := b.rollup(t); !slices.Equal(got, want) {
		t.Fatalf("after scheduled runs\n got %q\nwant %q", got, want)
	}
	if got := b.daily(t); len(got) == 0 {
		t.Fatal("the scheduled run built no daily row")
	}

	// A repair: the rows are lost, and an explicit window (widened to whole hours)
	// rebuilds them from the events, only for its hours.
	_, err := b.pool.Exec(context.Background(), "DELETE FROM usage_hourly")
	must(t, err)
	must(t, workRollup(t, w, job.UsageRollupArgs{From: old.Add(5 * time.Minute), To: old.Add(6 * time.Minute)}))
	if got := b.rollup(t); !slices.Equal(got, want[:1]) {
		t.Fatalf("after repairing one hour\n got %q\nwant %q", got, want[:1])
	}
	must(t, workRollup(t, w, job.UsageRollupArgs{From: old, To: hour.Add(time.Hour)}))
	if got := b.rollup(t); !slices.Equal(got, want) {
		t.Fatalf("after repairing every hour\n got %q\nwant %q", got, want)
	}

	// An empty window is cancelled, not retried.
	err = workRollup(t, w, job.UsageRollupArgs{From: old, To: old})
	var cancel *river.JobCancelError
	if !errors.As(err, &cancel) {
		t.Fatalf("empty window: err = %v, want a JobCancel", err)
	}
}

// TestUsageRollupRepairWhileIngesting: ingestion goes on while repairs rebuild the same
// hour; afterwards the hourly rows equal the sums of the events exactly (a repair that
// read the events before an addition committed must not overwrite it). Without the
// repair's table lock it failed in about half the runs here; it cannot catch that every
// time, since the race needs an addition to commit within a rebuild.
func TestUsageRollupRepairWhileIngesting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	hour := time.Now().UTC().Truncate(time.Hour)
	w := job.NewUsageRollupWorker(b.pool, b.log)
	done := make(chan error, 1)
	go func() {
		for i := range 120 {
			at := hour.Add(time.Duration(i) * time.Millisecond)
			if _, err := usage.Ingest(context.Background(), b.pool, b.events(int64(i+1), at, at.Add(time.Microsecond))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for repairs := 0; ; repairs++ {
		select {
		case err := <-done:
			must(t, err)
			var rolled, events int64
			must(t, b.pool.QueryRow(context.Background(), "SELECT coalesce(sum(billed_cost_nano), 0) FROM usage_hourly").Scan(&rolled))
			must(t, b.pool.QueryRow(context.Background(), "SELECT coalesce(sum(billed_cost_nano), 0) FROM usage_events").Scan(&events))
			if rolled != events || events != 120*121 {
				t.Fatalf("after %d repairs during ingestion the rollup holds %d nano-USD, the events %d (want %d)", repairs, rolled, events, 120*121)
			}
			return
		default:
		}
		must(t, workRollup(t, w, job.UsageRollupArgs{From: hour, To: hour.Add(time.Hour)}))
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
	if got := b.daily(t); len(got) == 0 {
		t.Fatal("the rollup on start built no daily row")
	}

	_, err = b.pool.Exec(ctx, "DELETE FROM usage_hourly WHERE hour = $1", old)
	must(t, err)
	res, err := client.Insert(ctx, job.UsageRollupArgs{From: old, To: old.Add(time.Hour)}, nil)
	must(t, err)
	wait(func(j *rivertype.JobRow) bool { return j.ID == res.Job.ID })
	want := []string{
		old.Format(time.RFC3339) + " n=1 billed=40 in=100 cache_read=5",
		hour.Add(-time.Hour).Format(time.RFC3339) + " n=1 billed=40 in=100 cache_read=5",
	}
	if got := b.rollup(t); !slices.Equal(got, want) {
		t.Fatalf("rollup after repairing an explicit window\n got %q\nwant %q", got, want)
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
	want := []string{"usage_rollup 1m0s", "ledger_check 10m0s", "fx_sync 1h0m0s", "oauth_refresh 1m0s", "cache_events_prune 1h0m0s"}
	if !slices.Equal(got, want) {
		t.Fatalf("schedule %q, want %q", got, want)
	}
}

// daily returns the usage_daily rows as "day requests billed" lines, in day order.
func (b *testBundle) daily(t *testing.T) []string {
	t.Helper()
	rows, err := b.pool.Query(context.Background(),
		"SELECT day::text, requests, billed_cost_nano, input_tokens FROM usage_daily ORDER BY day")
	must(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var day string
		var req, billed, in int64
		must(t, rows.Scan(&day, &req, &billed, &in))
		out = append(out, fmt.Sprintf("%s n=%d billed=%d in=%d", day, req, billed, in))
	}
	must(t, rows.Err())
	return out
}

func TestUsageRollupDaily(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := job.NewUsageRollupWorker(b.pool, b.log)
	// Two UTC days, late on the first and early on the second.
	midnight := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	b.ingest(t, 10, midnight.Add(-90*time.Minute), midnight.Add(-30*time.Minute))
	b.ingest(t, 3, midnight.Add(20*time.Minute))

	// A window across midnight rebuilds both days from their hours.
	must(t, workRollup(t, w, job.UsageRollupArgs{From: midnight.Add(-2 * time.Hour), To: midnight.Add(time.Hour)}))
	want := []string{"2026-03-09 n=2 billed=20 in=200", "2026-03-10 n=1 billed=3 in=100"}
	if got := b.daily(t); !slices.Equal(got, want) {
		t.Fatalf("daily\n got %q\nwant %q", got, want)
	}
	must(t, workRollup(t, w, job.UsageRollupArgs{From: midnight.Add(-2 * time.Hour), To: midnight.Add(time.Hour)}))
	if got := b.daily(t); !slices.Equal(got, want) {
		t.Fatalf("after a re-run\n got %q\nwant %q", got, want)
	}

	// A late event earlier that day: re-running only its hour still gives the whole day,
	// since the day is summed from every hour already rolled up.
	early := midnight.Add(-20 * time.Hour)
	b.ingest(t, 100, early)
	must(t, workRollup(t, w, job.UsageRollupArgs{From: early, To: early.Add(time.Minute)}))
	want[0] = "2026-03-09 n=3 billed=120 in=300"
	if got := b.daily(t); !slices.Equal(got, want) {
		t.Fatalf("after a late event\n got %q\nwant %q", got, want)
	}
}
