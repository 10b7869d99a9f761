// Command worker runs Tollgate's background work: River jobs on their periodic schedule,
// and the consumer that moves usage events from the Redis stream into PostgreSQL. Any
// number of copies may run; they share the jobs and the stream's consumer group.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/tollgate/tollgate/internal/account"
	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/internal/db"
	"github.com/tollgate/tollgate/internal/invalidate"
	"github.com/tollgate/tollgate/internal/job"
	"github.com/tollgate/tollgate/internal/logging"
	"github.com/tollgate/tollgate/internal/secret"
	"github.com/tollgate/tollgate/internal/usage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

// stopTimeout bounds the graceful shutdown; River cancels jobs still running after its
// own soft stop timeout, which is shorter.
const stopTimeout = 20 * time.Second

// run works until ctx is done, then stops reading the stream, finishes the batch in
// flight, lets running jobs finish and closes its connections.
func run(ctx context.Context, stderr io.Writer) error {
	cfg, err := config.LoadWorker()
	if err != nil {
		return err
	}
	log := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)

	// A worker started while PostgreSQL does not answer yet waits for it (a refused
	// password or a missing database still stops it at once); Redis may be away at start:
	// the consumer retries until it answers.
	pool, err := db.OpenWait(ctx, cfg.DatabaseURL, 0, log)
	if err != nil {
		if ctx.Err() != nil {
			log.Info("worker stopped before it could start", "err", err)
			return nil
		}
		return err
	}
	defer pool.Close()
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("parse REDIS_URL: %w", err)
	}
	opts.DialerRetries = 1 // as the proxy's: a refused dial fails at once, the loops retry
	rdb := redis.NewClient(opts)
	defer rdb.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	host, _ := os.Hostname()
	name := fmt.Sprintf("%s-%d", host, os.Getpid())
	durability := watchDurability(rdb, log, reg)
	registerBacklog(rdb, cfg.RedisPrefix, reg)
	consumer := usage.NewConsumer(rdb, pool, cfg.RedisPrefix, name, log, usage.WithMetrics(reg), usage.WithClaimIdle(cfg.UsageClaimIdle), usage.WithLinger(cfg.UsageLinger))

	box, err := secret.NewBox(cfg.Secret(), secret.PurposeAccount)
	if err != nil {
		return err
	}
	jobs, err := job.NewClient(pool, log, job.Config{
		FXSourceURL: cfg.FXSourceURL,
		OnFXRate: func(ctx context.Context) {
			// Proxies reload prices, group factors and the rate on this event.
			if err := invalidate.Publish(ctx, rdb, cfg.RedisPrefix, invalidate.Event{Kind: invalidate.Prices}); err != nil {
				log.Warn("announce new exchange rate", "err", err)
			}
		},
		Refresher:         account.NewRefresher(pool, rdb, cfg.RedisPrefix, box, cfg.OAuth.Clients(), log),
		OAuthRefreshAhead: cfg.OAuthRefreshAhead,
		Every:             map[string]time.Duration{job.OAuthRefreshArgs{}.Kind(): cfg.OAuthRefreshEvery},
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HealthAddr)
	if err != nil {
		return fmt.Errorf("listen on WORKER_HEALTH_ADDR: %w", err)
	}
	srv := &http.Server{
		Handler: routes(log, []check{
			{"database", pool.Ping},
			{"redis", func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
		}, consumer.Stats, reg),
		ReadHeaderTimeout: 5 * time.Second,
	}
	// Shutdown is a graceful Stop below; cancelling Start's context would kill running jobs.
	if err := jobs.Start(context.WithoutCancel(ctx)); err != nil {
		ln.Close()
		return fmt.Errorf("start river: %w", err)
	}
	log.Info("worker started", "health_addr", ln.Addr().String(), "consumer", name)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return consumer.Run(gctx) })
	go durability(gctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve health: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("worker stopping")
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		defer cancel()
		var errs []error
		if err := jobs.Stop(stopCtx); err != nil {
			errs = append(errs, fmt.Errorf("stop river: %w", err))
		}
		if err := srv.Shutdown(stopCtx); err != nil {
			errs = append(errs, fmt.Errorf("stop health server: %w", err))
		}
		return errors.Join(errs...)
	})
	err = g.Wait()
	log.Info("worker stopped", "usage", consumer.Stats())
	return err
}
