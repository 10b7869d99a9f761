package job_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/job"
)

func TestFXSync(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	body := `{"base":"USD","rates":{"CNY":7.2}}`
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	}))
	defer src.Close()
	work := func(source string) error {
		t.Helper()
		w := job.NewFXSyncWorker(b.pool, b.log, source, src.Client())
		return w.Work(ctx, &river.Job[job.FXSyncArgs]{JobRow: &rivertype.JobRow{}})
	}
	latest := func() sqlc.FxRate {
		t.Helper()
		r, err := sqlc.New().FxRateLatest(ctx, b.pool)
		must(t, err)
		return r
	}

	// The proxies price with the rate: each new rate is recorded for them to read.
	recorded := func() (n int) {
		t.Helper()
		must(t, b.pool.QueryRow(ctx, "SELECT count(*) FROM cache_events WHERE kind = 'prices'").Scan(&n))
		return n
	}
	must(t, work(src.URL+"/latest/USD"))
	good := latest()
	if n := recorded(); n != 1 {
		t.Fatalf("%d price invalidations recorded with the new rate, want 1", n)
	}
	host, _ := url.Parse(src.URL)
	if good.RateMicro != 7_200_000 || good.Source != host.Host {
		t.Fatalf("stored rate %+v, want 7.2 from %s", good, host.Host)
	}

	// Every failure is returned (River records it) and leaves the last good rate alone.
	for _, tc := range []struct{ name, body, source string }{
		{"malformed", `{"rates":{"CNY":`, src.URL},
		{"out of range", `{"base":"USD","rates":{"CNY":720}}`, src.URL},
		{"zero", `{"rates":{"CNY":0}}`, src.URL},
		{"unreachable", body, "http://127.0.0.1:1/latest"},
	} {
		body = tc.body
		if err := work(tc.source); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
		if r := latest(); r.ID != good.ID {
			t.Errorf("%s: stored %+v over the last good rate", tc.name, r)
		}
	}
	if n := recorded(); n != 1 {
		t.Fatalf("%d price invalidations recorded after failed syncs, want 1", n)
	}

	// Without FX_SOURCE_URL the job is cancelled (no retries), not failed forever.
	var cancel *river.JobCancelError
	if err := work(""); !errors.As(err, &cancel) {
		t.Fatalf("unset source: %v, want a JobCancel", err)
	}

	body = `{"base_code":"USD","rates":{"CNY":"7.1834"}}`
	must(t, work(src.URL))
	if r := latest(); r.RateMicro != 7_183_400 {
		t.Fatalf("second rate %d, want 7183400", r.RateMicro)
	}
}
