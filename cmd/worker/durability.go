package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/redisinfo"
	"github.com/tollgate/tollgate/internal/usage"
)

// durabilityEvery is how often the worker looks at Redis's persistence and eviction
// settings.
const durabilityEvery = 10 * time.Minute

// A redisCheck is one setting of Redis that billing depends on: the worker reports it as
// a gauge (1 safe, 0 unsafe, -1 while unknown) and logs when it turns unsafe (once per
// change) and safe again, so that an operator finds it out from a metric or the log
// rather than from a ledger short of its usage.
type redisCheck struct {
	gauge          prometheus.Gauge
	safe           func(ctx context.Context) (bool, string, error) // safe?, and what was seen
	unsafe, mended string                                          // log messages
	last           int
}

// watchDurability watches two settings:
//
//   - tollgate_redis_aof_enabled: usage events wait in Redis's stream until a worker
//     stores them (well under a second at any load), and a Redis restart without an
//     append-only file loses them: requests served and never billed.
//   - tollgate_redis_eviction_safe: a Redis with a memory limit and an allkeys-* policy
//     may evict the usage stream itself when it fills up (redisinfo.EvictsUnexpiring).
//
// It registers the gauges at once and returns the loop, to run until ctx ends.
func watchDurability(rdb redis.UniversalClient, log *slog.Logger, reg prometheus.Registerer) func(ctx context.Context) {
	checks := []*redisCheck{
		{
			gauge: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "tollgate_redis_aof_enabled",
				Help: "1 when Redis keeps an append-only file, 0 when it does not (usage events not yet ingested are lost if it restarts), -1 while unknown.",
			}),
			safe: func(ctx context.Context) (bool, string, error) {
				on, err := redisinfo.AOFEnabled(ctx, rdb)
				return on, "", err
			},
			unsafe: "Redis runs without an append-only file: the usage events it holds until a worker stores them are lost if it restarts, and those requests go unbilled; run it with appendonly yes (appendfsync everysec or always)",
			mended: "Redis keeps an append-only file again",
		},
		{
			gauge: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "tollgate_redis_eviction_safe",
				Help: "1 when Redis never evicts keys without an expiry (no maxmemory, noeviction or a volatile-* policy), 0 when it may evict the usage stream (allkeys-*), -1 while unknown.",
			}),
			safe: func(ctx context.Context) (bool, string, error) {
				evicts, policy, err := redisinfo.EvictsUnexpiring(ctx, rdb)
				return !evicts, policy, err
			},
			unsafe: "Redis may evict keys without an expiry when it reaches maxmemory: the usage stream among them, and the requests it held go unbilled; set maxmemory-policy noeviction (or a volatile-* policy), or no maxmemory",
			mended: "Redis no longer evicts keys without an expiry",
		},
	}
	for _, c := range checks {
		reg.MustRegister(c.gauge)
		c.gauge.Set(-1)
		c.last = -1
	}
	return func(ctx context.Context) { durabilityLoop(ctx, log, checks) }
}

func durabilityLoop(ctx context.Context, log *slog.Logger, checks []*redisCheck) {
	for {
		known := true
		for _, c := range checks {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			safe, seen, err := c.safe(rctx)
			cancel()
			now := -1
			if err == nil {
				now = 0
				if safe {
					now = 1
				}
			}
			c.gauge.Set(float64(now))
			switch {
			case now == 0 && c.last != 0:
				log.Error(c.unsafe, "seen", seen)
			case now == 1 && c.last == 0:
				log.Info(c.mended, "seen", seen)
			}
			if now == -1 {
				known = false
			} else {
				c.last = now
			}
		}
		wait := durabilityEvery
		if !known {
			wait = 10 * time.Second // Redis away: look again soon
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// registerBacklog exposes tollgate_usage_backlog: the usage events in Redis's stream that
// no worker has stored and acknowledged yet (its length, read at each scrape; -1 when
// Redis does not answer). It grows while PostgreSQL is away or the workers fall behind,
// and falls back to a batch's worth once they catch up: the lag metric says how late the
// stored events were, this how many wait.
func registerBacklog(rdb redis.UniversalClient, prefix string, reg prometheus.Registerer) {
	stream := usage.StreamKey(prefix)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tollgate_usage_backlog",
		Help: "Usage events in the Redis stream not yet stored and acknowledged by a worker; -1 when Redis does not answer.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := rdb.XLen(ctx, stream).Result()
		if err != nil {
			return -1
		}
		return float64(n)
	}))
}
