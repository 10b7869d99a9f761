package e2e

import (
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metric reads one unlabelled sample from the proxy's /metrics.
func (s *stack) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := httpClient.Get(s.proxyURL + "/metrics")
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
// requests' calls, so this is the most they cost.
func TestHotPathBudget(t *testing.T) {
	s := newStack(t, func(su *setup) { su.quotaFlush = time.Hour })
	stream := `{"model":"` + model + `","max_tokens":32,"stream":true,"messages":[{"role":"user","content":"budget"}]}`
	rawPost(t, s.proxyURL, s.seeded.DemoKey, smallBody, nil) // warm the key cache and balance snapshot
	db0, rd0 := s.settledMetric(t, "tollgate_db_acquires_total"), s.settledMetric(t, "tollgate_redis_roundtrips_total")
	const n = 20
	for i := range n {
		body := smallBody
		if i%2 == 1 {
			body = stream
		}
		if resp, b := rawPost(t, s.proxyURL, s.seeded.DemoKey, body, nil); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	}
	db1, rd1 := s.settledMetric(t, "tollgate_db_acquires_total"), s.settledMetric(t, "tollgate_redis_roundtrips_total")
	if d := db1 - db0; d != 0 {
		t.Errorf("%v PostgreSQL acquisitions for %d requests, want 0", d, n)
	}
	if want := float64(2*n + n/2); rd1-rd0 != want {
		t.Errorf("%v Redis round trips for %d requests (half of them streams), want %v", rd1-rd0, n, want)
	}
}
