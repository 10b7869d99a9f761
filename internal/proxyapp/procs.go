package proxyapp

import (
	"context"
	"log/slog"
	"runtime"
	"syscall"
	"time"
)

// adaptProcs runs the proxy's goroutines on one thread while it is nearly idle and on
// every CPU otherwise (PROXY_ADAPTIVE_PROCS, on by default; off when GOMAXPROCS is set),
// checking its own CPU use every interval (50 ms in the proxy).
//
// Why: at light load each request crosses several goroutines (the connection's, the
// upstream transport's reader and writer, the handler's), and with more than one P
// every hand-off may wake a sleeping thread to run it — 50–200 µs on a small VM whose
// cores are otherwise idle. On one P the readied goroutine runs on the thread that
// readied it. In the bench (bench/README, "Ninth round") one P lowered the added p50
// at 200 req/s in every alternated pair, and GOMAXPROCS=1 throughout had cost 6 % of
// throughput under load, so the proxy switches: to one P after a second below a tenth
// of a core, back to all of them within one interval of using a third of one. A
// switch briefly stops the world; the hysteresis keeps switches to changes of regime.
//
// Widening restores the runtime's default (runtime.SetDefaultGOMAXPROCS), which follows
// the container's CPU quota as it changes. The loop ends at once if that default is a
// single CPU: there is nothing to narrow.
func adaptProcs(ctx context.Context, log *slog.Logger, interval time.Duration) {
	if runtime.GOMAXPROCS(0) < 2 {
		return
	}
	const (
		busy  = 0.33 // of a core, over one interval: go wide
		calm  = 0.10 // of a core, over every interval of a second: go narrow
		quiet = time.Second
	)
	t := time.NewTicker(interval)
	defer t.Stop()
	narrow, calmSince := false, time.Time{}
	last, lastAt := processCPU(), time.Now()
	for {
		select {
		case <-ctx.Done():
			if narrow {
				runtime.SetDefaultGOMAXPROCS()
			}
			return
		case <-t.C:
		}
		cpu, at := processCPU(), time.Now()
		used := (cpu - last).Seconds() / at.Sub(lastAt).Seconds()
		last, lastAt = cpu, at
		switch {
		case narrow && used > busy:
			runtime.SetDefaultGOMAXPROCS()
			narrow, calmSince = false, time.Time{}
			log.Debug("load: running on every CPU", "procs", runtime.GOMAXPROCS(0), "cpu_cores_used", used)
		case !narrow && used < calm:
			if calmSince.IsZero() {
				calmSince = at
			} else if at.Sub(calmSince) >= quiet {
				runtime.GOMAXPROCS(1)
				narrow = true
				log.Debug("nearly idle: running on one thread", "cpu_cores_used", used)
			}
		case !narrow:
			calmSince = time.Time{}
		}
	}
}

// processCPU is the CPU time the process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
