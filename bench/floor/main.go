// Command floor is a bare Go reverse proxy — net/http's server and
// httputil.ReverseProxy, nothing else: no keys, limits, Redis, PostgreSQL or billing — to
// the first account's upstream. Run in place of the proxy
// (BENCH_PROXY_BIN=.dev/bin/floor), the bench measures what one net/http hop costs on
// the machine at that hour, the floor under anything Tollgate's proxy can reach
// (bench/README.md, "Calibrating against a bare hop"). Not part of Tollgate.
package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"

	"github.com/jackc/pgx/v5"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		return err
	}
	var base string
	err = conn.QueryRow(ctx, "SELECT base_url FROM accounts ORDER BY id LIMIT 1").Scan(&base)
	conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("read the upstream: %w", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		return err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 512} // as many as the bench's connections
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ready\n")) })
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {}) // no Tollgate metrics
	mux.Handle("/", rp)
	return http.ListenAndServe(os.Getenv("PROXY_ADDR"), mux)
}
