// Command web serves Tollgate's web app (sign-in, API keys, usage, wallet, admin) and
// runs the schema migrations and the seed.
//
//	web [serve]                                 serve the app on WEB_ADDR
//	web migrate                                 apply app and River migrations
//	web seed [-demo-env PATH] [-fakellm-url URL] seed the defaults (and demo data)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/internal/db"
	"github.com/tollgate/tollgate/internal/logging"
	"github.com/tollgate/tollgate/internal/seed"
	"github.com/tollgate/tollgate/internal/web"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "web:", err)
		os.Exit(1)
	}
}

// run dispatches the subcommand.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	cfg, err := config.LoadWeb()
	if err != nil {
		return err
	}
	logger := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)

	switch cmd {
	case "serve":
		return serve(ctx, cfg, logger)
	case "migrate":
		pool, err := db.Open(ctx, cfg.DatabaseURL, 2)
		if err != nil {
			return err
		}
		defer pool.Close()
		return db.Migrate(ctx, pool, logger)
	case "seed":
		fs := flag.NewFlagSet("web seed", flag.ContinueOnError)
		fs.SetOutput(stderr)
		demoEnv := fs.String("demo-env", "", "seed demo data and write its credentials to this env file")
		fakeLLM := fs.String("fakellm-url", "", "base URL of fakellm for the demo upstream account")
		if err := fs.Parse(args); err != nil {
			return err
		}
		pool, err := db.Open(ctx, cfg.DatabaseURL, 2)
		if err != nil {
			return err
		}
		defer pool.Close()
		_, err = seed.Run(ctx, pool, seed.Options{
			AdminEmail:    cfg.AdminEmail,
			AdminPassword: cfg.AdminPassword,
			DemoEnvPath:   *demoEnv,
			FakeLLMURL:    *fakeLLM,
			WebURL:        cfg.BaseURL,
			ProxyURL:      cfg.ProxyPublicURL,
			Secret:        cfg.Secret(),
			Log:           logger,
		})
		return err
	default:
		return fmt.Errorf("unknown command %q: use serve, migrate or seed", cmd)
	}
}

// serve runs the app until ctx is done, then drains requests for up to 15 seconds.
func serve(ctx context.Context, cfg config.Web, logger *slog.Logger) error {
	// The app starts even when PostgreSQL or Redis does not answer yet (both starting
	// beside it, a failover): until they do, its pages are the same 503 "Temporarily
	// unavailable" page as during an outage and /readyz says 503, so a load balancer keeps
	// users away; then it serves without a restart. A malformed URL, a refused password or
	// a missing database stops it here: waiting would not cure those.
	pool, err := db.OpenLazy(cfg.DatabaseURL, 0)
	if err != nil {
		return err
	}
	defer pool.Close()

	redisOpts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	// One dial per new connection (go-redis's default is five, 100 ms apart): with Redis
	// away a page that needs it fails in milliseconds, not seconds.
	redisOpts.DialerRetries = 1
	rdb := redis.NewClient(redisOpts)
	defer rdb.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := pool.Ping(pingCtx); err != nil {
		if !db.Unavailable(err) { // a refused login, a missing database: waiting cures nothing
			cancel()
			return fmt.Errorf("connect to database: %w", err)
		}
		logger.Warn("database unreachable at start; pages answer 503 until it returns", "err", err)
	}
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		logger.Warn("redis unreachable at start; pages answer 503 until it returns", "err", err)
	}
	cancel()

	app, err := web.New(web.Config{
		BaseURL:        cfg.BaseURL,
		ProxyPublicURL: cfg.ProxyPublicURL,
		RedisPrefix:    cfg.RedisPrefix,
		Logger:         logger,
		DB:             pool,
		Redis:          rdb,
	})
	if err != nil {
		return err
	}
	defer app.Close()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on WEB_ADDR %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           app,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	logger.Info("web listening", "addr", ln.Addr().String(), "base_url", cfg.BaseURL)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info("web shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shut down: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("web stopped")
	return nil
}
