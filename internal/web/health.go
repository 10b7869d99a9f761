package web

import (
	"context"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5/middleware"
)

// healthz answers while the process is alive.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n")) //nolint:errcheck
}

// readyz answers 200 when PostgreSQL and Redis both answer, 503 otherwise, so a load
// balancer stops sending users to an instance that can only show error pages.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status, body := http.StatusOK, ""
	check := func(name string, err error) {
		if err != nil {
			status = http.StatusServiceUnavailable
			body += name + ": unavailable\n"
			s.log.WarnContext(ctx, "not ready", "request_id", middleware.GetReqID(ctx), "dependency", name, "error", err)
			return
		}
		body += name + ": ok\n"
	}
	check("database", s.db.Ping(ctx))
	check("redis", s.rdb.Ping(ctx).Err())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(body)) //nolint:errcheck
}
