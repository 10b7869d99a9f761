package proxyapp

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"syscall"
	"time"
)

// Adaptive GOMAXPROCS.
//
// A lightly loaded proxy spends most of a request's time in wake-ups, not work: each
// hand-off between goroutines (the server's, the handler's, the upstream transport's two)
// that finds another processor idle wakes a sleeping thread to run it, and on a small
// virtual machine waking a thread costs 50–200 µs. With one processor the hand-offs stay
// on the running thread. At 200 requests a second on the bench's 2-core machine that cut
// the latency the proxy adds by about 0.1 ms (p50 +0.39 → +0.27 ms, +0.49 → +0.35 ms in
// alternated runs) — but one processor caps a busy proxy at one core (−6 % throughput
// at saturation). So the proxy runs on one processor while it uses little CPU and on all
// of them as soon as it uses more: every procsEvery it compares the CPU it used with
// the thresholds below. The switch stops the world for some microseconds, a few times at
// the start and end of a burst; a burst's first tenth of a second runs on one processor.
// In three alternated short bench runs against the fixed count: added p50 at 200 req/s
// +0.41–0.48 → +0.34–0.35 ms, added TTFB +0.44–0.57 → +0.34–0.40 ms, throughput −2 %
// (each 2-second run starts on one processor).
//
// It stays out of the way when it cannot help or was not asked: with one CPU, when
// GOMAXPROCS is set in the environment, or with PROXY_ADAPTIVE_PROCS=false.
const (
	procsEvery = 100 * time.Millisecond
	// procsUp: on one processor, above this many cores used the proxy takes all of them
	// (past it, a request waits for the one processor more than it saves in wake-ups).
	procsUp = 0.5
	// procsDown: on all processors, under this many cores used it goes back to one.
	procsDown = 0.2
)

// procsController decides the processor count from the CPU the process used.
type procsController struct {
	max     int
	cur     int
	lastCPU time.Duration
	lastAt  time.Time
}

// next returns the processor count for the interval ending at now, given the process's
// CPU time so far.
func (c *procsController) next(cpu time.Duration, now time.Time) int {
	elapsed := now.Sub(c.lastAt)
	used := cpu - c.lastCPU
	c.lastCPU, c.lastAt = cpu, now
	if elapsed <= 0 {
		return c.cur
	}
	cores := used.Seconds() / elapsed.Seconds()
	switch {
	case c.cur == 1 && cores > procsUp:
		c.cur = c.max
	case c.cur > 1 && cores < procsDown:
		c.cur = 1
	}
	return c.cur
}

// adaptProcs runs the controller until ctx ends, then gives the process all its
// processors back.
func adaptProcs(ctx context.Context, log *slog.Logger) {
	max := runtime.GOMAXPROCS(0)
	if max < 2 || os.Getenv("GOMAXPROCS") != "" {
		return
	}
	c := &procsController{max: max, cur: 1, lastCPU: processCPU(), lastAt: time.Now()}
	runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(max)
	log.Debug("adaptive GOMAXPROCS", "max", max)
	t := time.NewTicker(procsEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cur := c.cur
			if n := c.next(processCPU(), now); n != cur {
				runtime.GOMAXPROCS(n)
			}
		}
	}
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
