package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tollgate/tollgate/internal/usage"
)

// check is one dependency /readyz requires.
type check struct {
	name string
	ping func(context.Context) error
}

// routes serves the worker's health endpoints:
//
//	GET /healthz  200 while the process runs, with the usage consumer's counters
//	GET /readyz   200 when every dependency answers, else 503 naming those that don't
//	GET /metrics  Prometheus metrics of reg
func routes(log *slog.Logger, checks []check, stats func() usage.ConsumerStats, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		s := stats()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{ //nolint:errcheck // the client went away
			"status": "ok",
			"usage": map[string]any{
				"ingested": s.Ingested, "batches": s.Batches, "dead_lettered": s.DeadLettered,
				"lag_seconds": s.Lag.Seconds(),
			},
		})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		var down []string
		for _, c := range checks {
			if err := c.ping(ctx); err != nil {
				log.Warn("not ready", "dependency", c.name, "err", err)
				down = append(down, c.name)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if len(down) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "unavailable: %s\n", strings.Join(down, ", "))
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}
