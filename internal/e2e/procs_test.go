package e2e

import (
	"context"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestProxyProcsFollowLoad: a proxy process left idle runs its goroutines on one thread
// (PROXY_ADAPTIVE_PROCS, on by default), goes back to every CPU under load, and leaves
// GOMAXPROCS alone when the operator set it. On a single CPU there is nothing to widen
// and it stays at one; CI and the bench machine have two.
func TestProxyProcsFollowLoad(t *testing.T) {
	s := newStack(t)
	url, _ := s.startProxy(t)
	const procs = "go_sched_gomaxprocs_threads"
	waitProcs := func(url string, ok func(float64) bool, what string, within time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
			n := metricAt(t, url, procs)
			if ok(n) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s %v after %s, want %s", procs, n, within, what)
			}
		}
	}
	waitProcs(url, func(n float64) bool { return n == 1 }, "1 while idle", 10*time.Second)

	// Four clients back to back keep the proxy busy: it widens.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/messages", strings.NewReader(smallBody))
				req.Header.Set("X-Api-Key", s.seeded.DemoKey)
				if resp, err := httpClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	if runtime.NumCPU() > 1 {
		waitProcs(url, func(n float64) bool { return n > 1 }, "more than 1 under load", 10*time.Second)
	} else {
		time.Sleep(time.Second)
		if n := metricAt(t, url, procs); n != 1 {
			t.Fatalf("on a single CPU %s is %v under load", procs, n)
		}
	}
	stop()
	wg.Wait()

	// GOMAXPROCS set by the operator: never changed.
	fixed, _ := s.startProxy(t, "GOMAXPROCS=2")
	time.Sleep(1500 * time.Millisecond) // longer than the calm second that narrows
	if n := metricAt(t, fixed, procs); n != 2 {
		t.Fatalf("with GOMAXPROCS=2 set, %s is %v", procs, n)
	}
}
