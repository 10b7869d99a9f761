package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/redisinfo"
)

// durabilityEvery is how often the worker looks at Redis's persistence settings.
const durabilityEvery = 10 * time.Minute

// watchDurability warns when Redis runs without an append-only file. Usage events wait
// in Redis's stream until a worker stores them (well under a second at any load), and a
// Redis restart without AOF loses them: requests that were served and never billed. The
// README asks for AOF; this makes a Redis that lacks it visible, in the log (once per
// change) and as tollgate_redis_aof_enabled (1, 0; -1 while unknown), rather than found
// out from a ledger short of its usage.
//
// It registers the gauge at once and returns the loop, to run until ctx ends.
func watchDurability(rdb redis.UniversalClient, log *slog.Logger, reg prometheus.Registerer) func(ctx context.Context) {
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tollgate_redis_aof_enabled",
		Help: "1 when Redis keeps an append-only file, 0 when it does not (usage events not yet ingested are lost if it restarts), -1 while unknown.",
	})
	reg.MustRegister(gauge)
	gauge.Set(-1)
	return func(ctx context.Context) { durabilityLoop(ctx, rdb, log, gauge) }
}

func durabilityLoop(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger, gauge prometheus.Gauge) {
	last := -1
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		on, err := redisinfo.AOFEnabled(rctx, rdb)
		cancel()
		now := -1
		if err == nil {
			now = 0
			if on {
				now = 1
			}
		}
		gauge.Set(float64(now))
		if now == 0 && last != 0 {
			log.Error("Redis runs without an append-only file: the usage events it holds until a worker stores them are lost if it restarts, and those requests go unbilled; run it with appendonly yes (appendfsync everysec or always)")
		}
		if now == 1 && last == 0 {
			log.Info("Redis keeps an append-only file again")
		}
		if now != -1 {
			last = now
		}
		wait := durabilityEvery
		if now == -1 {
			wait = 10 * time.Second // Redis away: look again soon
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
