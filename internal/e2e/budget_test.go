package e2e

import (
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/limit"
)

// metric reads one unlabelled sample from the proxy's /metrics.
func (s *stack) metric(t *testing.T, name string) float64 {
	t.Helper()
	return metricAt(t, s.proxyURL, name)
}

// metricAt reads one unlabelled sample from the /metrics of the process (a proxy, a
// worker) at url.
func metricAt(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := httpClient.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// settledMetric reads a counter once completions (which run after each response) have
// stopped moving it.
func (s *stack) settledMetric(t *testing.T, name string) float64 {
	t.Helper()
	last := s.metric(t, name)
	for i := 0; i < 50; i++ {
		time.Sleep(40 * time.Millisecond)
		v := s.metric(t, name)
		if v == last {
			return v
		}
		last = v
	}
	t.Fatalf("%s never settled", name)
	return 0
}

// TestHotPathBudget: in steady state a proxied request makes no PostgreSQL round trip
// and two Redis round trips (admission, completion); a stream makes a third, the
// checkpoint of its first usage report. Under load these share pipelines with other
// requests' calls, so this is the most they cost. A request whose admission the
// completion before it reserved (a busy run of alike requests, limit/reserve.go) makes
// one fewer.
func TestHotPathBudget(t *testing.T) {
	stream := `{"model":"` + model + `","max_tokens":32,"stream":true,"messages":[{"role":"user","content":"budget"}]}`
	const n = 20
	// measure sends n requests (streams every other one when mixed), one after the
	// other's completion has run, and returns the PostgreSQL acquisitions and Redis round
	// trips they made.
	measure := func(t *testing.T, s *stack, mixed bool) (db, rd float64) {
		t.Helper()
		rawPost(t, s.proxyURL, s.seeded.DemoKey, smallBody, nil) // warm the key cache and balance snapshot
		db0, rd0 := s.settledMetric(t, "tollgate_db_acquires_total"), s.settledMetric(t, "tollgate_redis_roundtrips_total")
		for i := range n {
			body := smallBody
			if mixed && i%2 == 1 {
				body = stream
			}
			if resp, b := rawPost(t, s.proxyURL, s.seeded.DemoKey, body, nil); resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			s.settledMetric(t, "tollgate_redis_roundtrips_total")
		}
		return s.settledMetric(t, "tollgate_db_acquires_total") - db0, s.settledMetric(t, "tollgate_redis_roundtrips_total") - rd0
	}

	t.Run("without reservations", func(t *testing.T) {
		s := newStack(t, func(su *setup) {
			su.quotaFlush = time.Hour
			// The orphan sweep and the lease renewal run every LeaseTTL/3: not in here.
			su.limits = limit.Options{ReserveIdle: -1, LeaseTTL: time.Hour}
		})
		db, rd := measure(t, s, true)
		if db != 0 {
			t.Errorf("%v PostgreSQL acquisitions for %d requests, want 0", db, n)
		}
		if want := float64(2*n + n/2); rd != want {
			t.Errorf("%v Redis round trips for %d requests (half of them streams), want %v", rd, n, want)
		}
	})

	t.Run("busy run", func(t *testing.T) {
		s := newStack(t, func(su *setup) {
			su.quotaFlush = time.Hour
			su.limits = limit.Options{ReserveIdle: time.Minute, LeaseTTL: time.Hour} // no release, sweep or renewal while it runs
		})
		db, rd := measure(t, s, false)
		if db != 0 {
			t.Errorf("%v PostgreSQL acquisitions for %d requests, want 0", db, n)
		}
		// The warm-up request completed just before: the first request is admitted
		// (one trip) and every completion reserves the next admission (one trip each).
		if want := float64(n + 1); rd != want {
			t.Errorf("%v Redis round trips for %d requests in a busy run, want %v", rd, n, want)
		}
		if taken := s.metricLabelled(t, "tollgate_admissions_reserved_total", `outcome="taken"`); taken != n-1 {
			t.Errorf("%v requests admitted from a reservation, want %d", taken, n-1)
		}
	})
}

// metricLabelled reads one sample with the given labels from the proxy's /metrics.
func (s *stack) metricLabelled(t *testing.T, name, labels string) float64 {
	t.Helper()
	return s.metric(t, name+"{"+labels+"}")
}
