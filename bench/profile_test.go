package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	proxyconfig "github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/internal/logging"
	"github.com/tollgate/tollgate/internal/proxyapp"
)

// BenchmarkProxy runs the proxy in this process, on the bench's stack (PostgreSQL,
// Redis, fakellm and worker as processes), so that a CPU or memory profile shows where
// the proxy spends its time. It needs the binaries of `make build`:
//
//	make build
//	go test -run '^$' -bench Proxy -benchtime 20000x -cpuprofile /tmp/proxy.cpu ./bench
//	go tool pprof -top -focus 'relay|limit|proxyapp|net/http' bench.test /tmp/proxy.cpu
//
// The profile also holds the load generator's own CPU (package main).
func BenchmarkProxy(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root, err := filepath.Abs("..")
	if err != nil {
		b.Fatal(err)
	}
	s := &stack{root: root, noProxy: true}
	defer s.close()
	if err := setUp(ctx, s); err != nil {
		b.Fatal(err)
	}
	for _, kv := range s.commonEnv() {
		k, v, _ := strings.Cut(kv, "=")
		b.Setenv(k, v)
	}
	b.Setenv("PROXY_ADDR", s.proxyAddr)
	// The load generator shares this process: its GOMAXPROCS is not the proxy's to adapt.
	b.Setenv("PROXY_ADAPTIVE_PROCS", "false")
	cfg, err := proxyconfig.LoadProxy()
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", s.proxyAddr)
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- proxyapp.Serve(ctx, cfg, logging.New(io.Discard, "text", "warn"), ln) }()
	defer func() { cancel(); <-served }()
	if err := waitHTTP(ctx, nil, "http://"+s.proxyAddr+"/readyz", 30*time.Second); err != nil {
		b.Fatal(err)
	}
	tg := target{name: "tollgate", addr: s.proxyAddr, keys: []string{s.demoKey}}

	for _, c := range []struct {
		name string
		body []byte
	}{{"nonstream", nonStreamBody()}, {"stream64", streamBody(0)}} {
		b.Run(c.name, func(b *testing.B) {
			req := rawRequest(tg, c.body)
			trips := redisTrips(b, s.proxyAddr)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range 50 {
				wg.Go(func() {
					cn := newConn(tg.addr, time.Now().Add(10*time.Minute))
					defer cn.close()
					for next.Add(1) <= int64(b.N) {
						if _, err := cn.do(req, false); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric((redisTrips(b, s.proxyAddr)-trips)/float64(b.N), "redis-trips/op")
		})
	}
}

// redisTrips reads the proxy's count of Redis round trips from its metrics.
func redisTrips(b *testing.B, addr string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, "tollgate_redis_roundtrips_total "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no tollgate_redis_roundtrips_total in the proxy's metrics")
	return 0
}
