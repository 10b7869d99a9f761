package e2e

import (
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestZZProfile(t *testing.T) {
	if os.Getenv("PROFILE") == "" {
		t.Skip()
	}
	s := newStack(t, func(su *setup) { su.quotaFlush = time.Hour })
	tr := &http.Transport{MaxIdleConnsPerHost: 100}
	cl := &http.Client{Transport: tr}
	f, _ := os.Create("/tmp/lead/cpu.prof")
	pprof.StartCPUProfile(f)
	var n atomic.Int64
	deadline := time.Now().Add(5 * time.Second)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest("POST", s.proxyURL+"/v1/messages", strings.NewReader(smallBody))
				req.Header.Set("X-Api-Key", s.seeded.DemoKey)
				resp, err := cl.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n.Add(1)
			}
		})
	}
	wg.Wait()
	pprof.StopCPUProfile()
	t.Logf("%d requests in 5s: %d/s", n.Load(), n.Load()/5)
}
