// Command bench measures Tollgate's proxy against its zero-delay fake upstream: every
// scenario runs against fakellm directly and through the proxy, interleaved, for several
// rounds, and the medians and ranges go to a table and bench/results.json. `make bench`
// builds the binaries and runs it from the repository root; BENCH_SHORT=1 keeps it
// under two minutes. See bench/README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if errors.Is(err, context.Canceled) {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

// config is the length and size of each scenario.
type config struct {
	short      bool
	rounds     int
	warmup     time.Duration
	throughput time.Duration // closed loop, non-streaming
	latency    time.Duration // fixed rate, non-streaming
	streamMax  time.Duration // closed loop, streaming
	streamTTFB time.Duration // fixed rate, streaming
	conns      int           // closed-loop connections
	rate       int           // fixed-rate requests per second
	flushRuns  int           // slow streams per round of the flush check
	flushDelay int           // ms between events in the flush check
	memStreams []int         // concurrent slow streams in the memory scenarios
	ingestWait time.Duration // longest wait for the worker to catch up
	// only names the steps to run (BENCH_ONLY, comma-separated step keys); empty: all.
	// A partial run does not overwrite bench/results.json.
	only map[string]bool
}

func loadConfig() config {
	c := config{
		rounds: 3, warmup: time.Second,
		throughput: 10 * time.Second, latency: 10 * time.Second,
		streamMax: 10 * time.Second, streamTTFB: 10 * time.Second,
		conns: 50, rate: 200, flushRuns: 3, flushDelay: 5,
		memStreams: []int{1000, 10000}, ingestWait: 2 * time.Minute,
	}
	if v := os.Getenv("BENCH_SHORT"); v != "" && v != "0" {
		c.short = true
		c.warmup = 500 * time.Millisecond
		c.throughput, c.latency = 2*time.Second, 2*time.Second
		c.streamMax, c.streamTTFB = 2*time.Second, 2*time.Second
		c.flushRuns = 1
		c.memStreams = []int{1000}
		c.ingestWait = 30 * time.Second
	}
	for _, k := range strings.Split(os.Getenv("BENCH_ONLY"), ",") {
		if k = strings.TrimSpace(k); k != "" {
			if c.only == nil {
				c.only = map[string]bool{}
			}
			c.only[k] = true
		}
	}
	return c
}

func run(ctx context.Context) error {
	started := time.Now()
	cfg := loadConfig()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return errors.New("run the bench from the repository root (make bench)")
	}
	nofile, err := raiseFileLimit()
	if err != nil {
		return err
	}

	load, _ := os.ReadFile("/proc/loadavg")
	s := &stack{root: root}
	defer s.close()
	fmt.Fprintln(os.Stderr, "bench: setting up PostgreSQL, Redis, database", benchDB, "and the processes")
	if err := setUp(ctx, s); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: fakellm %s, proxy %s (pid %d), worker %s; logs in .dev/logs/bench-*.log\n",
		s.fakellmAddr, s.proxyAddr, s.proxy.pid(), s.workerAddr)

	b := newBench(cfg, s, nofile)
	if f := strings.Fields(string(load)); len(f) >= 3 {
		b.rep.note("load average before the bench started (1, 5, 15 min): %s %s %s; other work on the machine skews every figure.", f[0], f[1], f[2])
	}
	if n := len(s.keys); n > 1 {
		b.rep.note("%d users, each with a key, share the load through the proxy (BENCH_USERS): connection i sends key i %% %d.", n, n)
	}
	if err := b.runAll(ctx); err != nil {
		return err
	}
	mode := "full"
	if cfg.short {
		mode = "short (BENCH_SHORT=1)"
	}
	b.rep.print(os.Stdout, fmt.Sprintf("Tollgate bench, %s mode, %d rounds interleaved (direct, tollgate, …), %s in all; loopback, fakellm upstream, %d CPUs shared by client, fakellm, proxy, worker, PostgreSQL and Redis.",
		mode, cfg.rounds, time.Since(started).Round(time.Second), numCPU()))
	if cfg.only != nil {
		fmt.Printf("\nBENCH_ONLY run: bench/results.json left as it was.\n")
		return nil
	}
	out := filepath.Join(root, "bench", "results.json")
	if err := b.rep.writeJSON(out); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	fmt.Printf("\nWrote %s.\n", out)
	return nil
}
