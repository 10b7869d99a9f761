package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/apikey"
)

// TestBadInputFlood: 10,000 requests with unknown (well-formed, random) keys, sent as
// fast as 32 keep-alive clients manage, each get a clear 401 in Anthropic's shape and
// together cost a bounded number of PostgreSQL queries, not one per key: lookups of keys
// absent from the known set are rate-limited (burst 50, then 10 a second,
// apikey.NewCache). Meanwhile a valid key's requests keep being served.
func TestBadInputFlood(t *testing.T) {
	const total, clients = 10_000, 32
	s := newStack(t)
	keys := make([]string, total)
	for i := range keys {
		keys[i] = apikey.Generate().Plaintext
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients + 1}}
	defer client.CloseIdleConnections()
	// The valid key is looked up (and cached) before the count starts.
	if status, body, err := floodPost(client, s.proxyURL, s.seeded.DemoKey); err != nil || status != 200 {
		t.Fatalf("valid key before the flood: %d %s %v", status, body, err)
	}
	db0 := s.settledMetric(t, "tollgate_db_acquires_total")
	seq := s.fake.LastSeq()

	var (
		next, refused atomic.Int64
		failMu        sync.Mutex
		failures      []string // the first few wrong answers
	)
	fail := func(format string, args ...any) {
		failMu.Lock()
		defer failMu.Unlock()
		if len(failures) < 5 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	flooding := make(chan struct{}) // closed when the flood is over
	var served, valid int
	var validWG sync.WaitGroup
	validWG.Go(func() {
		for {
			select {
			case <-flooding:
				return
			default:
			}
			status, body, err := floodPost(client, s.proxyURL, s.seeded.DemoKey)
			valid++
			if err != nil || status != 200 {
				fail("valid key during the flood: %d %s %v", status, body, err)
				continue
			}
			served++
		}
	})
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < total; i = next.Add(1) - 1 {
				status, body, err := floodPost(client, s.proxyURL, keys[i])
				var e anthropicErrorBody
				if err != nil || status != 401 || json.Unmarshal(body, &e) != nil || e.Type != "error" ||
					e.Error.Type != "tollgate_authentication_error" || e.Error.Message != "Tollgate: invalid API key" {
					fail("unknown key: %d %s %v", status, body, err)
					continue
				}
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(flooding)
	validWG.Wait()

	queries := s.settledMetric(t, "tollgate_db_acquires_total") - db0
	t.Logf("%d unknown keys in %s (%.0f/s): %v PostgreSQL queries; valid key served %d of %d during the flood",
		total, elapsed.Round(time.Millisecond), total/elapsed.Seconds(), queries, served, valid)
	if len(failures) > 0 {
		t.Fatalf("%d of %d unknown keys got a clear 401; first wrong answers:\n%s", refused.Load(), total, strings.Join(failures, "\n"))
	}
	// The lookup budget for the flood's duration, plus a snapshot reload or two.
	if limit := 50 + 10*elapsed.Seconds() + 10; queries > limit {
		t.Fatalf("%d unknown keys in %s cost %v PostgreSQL queries, want at most %.0f", total, elapsed, queries, limit)
	}
	if served < 3 {
		t.Fatalf("the valid key was served %d times during the flood, want it served throughout", served)
	}
	if n := len(s.fake.ServedSince(seq)); n != served {
		t.Fatalf("the upstream served %d requests, want the valid key's %d", n, served)
	}
}

// floodPost posts smallBody to the proxy's /v1/messages with key, from any goroutine.
func floodPost(client *http.Client, proxyURL, key string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, proxyURL+"/v1/messages", strings.NewReader(smallBody))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Anthropic-Version", "2023-06-01")
	req.Header.Set("X-Api-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}
