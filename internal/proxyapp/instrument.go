package proxyapp

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/limit"
)

// instrument exposes the proxy's I/O budget as metrics: every PostgreSQL connection
// acquisition and every Redis round trip (a command or a pipeline; connection handshakes
// and the identity watch's INFO excluded). In steady state a request should move the first by zero and the second by
// at most two (admission, completion; three for a stream, which checkpoints its first
// usage report) — one less when its admission was reserved by the completion before it.
func instrument(reg prometheus.Registerer, pool *pgxpool.Pool, rdb *redis.Client) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "tollgate_db_acquires_total", Help: "PostgreSQL connections acquired from the proxy's pool.",
	}, func() float64 { return float64(pool.Stat().AcquireCount()) }))
	trips := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tollgate_redis_roundtrips_total", Help: "Redis round trips (commands and pipelines) made by the proxy.",
	})
	reg.MustRegister(trips)
	rdb.AddHook(roundTrips{trips})
}

// instrumentGate counts the admissions reserved ahead of their requests (limit/reserve.go):
// made, taken by a request, and released because none came.
func instrumentGate(reg prometheus.Registerer, g *limit.Gate) {
	for i, outcome := range []string{"made", "taken", "released"} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_admissions_reserved_total", Help: "Admissions reserved ahead of their requests, by outcome.",
			ConstLabels: prometheus.Labels{"outcome": outcome},
		}, func() float64 {
			made, taken, released := g.Reservations()
			return float64([]int64{made, taken, released}[i])
		}))
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "tollgate_admissions_without_redis_total",
		Help: "Requests admitted without Redis (REDIS_OUTAGE=serve): limits counted in this process, usage billed in PostgreSQL.",
	}, func() float64 { return float64(g.AdmittedWithoutRedis()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tollgate_counter_resets_pending",
		Help: "Balance snapshots and spend counters of usage stored without Redis that Redis has not yet let the proxy reset (retried every PROXY_SPOOL_INTERVAL).",
	}, func() float64 { return float64(g.PendingResets()) }))
}

type roundTrips struct{ c prometheus.Counter }

func (r roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !notRequestWork(cmd.Name()) {
			r.c.Inc()
		}
		return next(ctx, cmd)
	}
}

func (r roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		// A new connection's handshake (HELLO, CLIENT SETINFO) is not request work.
		if len(cmds) == 0 || !notRequestWork(cmds[0].Name()) {
			r.c.Inc()
		}
		return next(ctx, cmds)
	}
}

// notRequestWork: commands that set up a new connection, and INFO, which only the
// once-a-second watch of Redis's identity sends (relay/recent.go).
func notRequestWork(name string) bool {
	switch name {
	case "hello", "client", "auth", "select", "info":
		return true
	}
	return false
}
