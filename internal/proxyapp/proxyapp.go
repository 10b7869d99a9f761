// Package proxyapp wires cmd/proxy: configuration, pools, caches, the relay server and
// graceful shutdown. It lives outside cmd/ so tests can run a whole proxy in-process.
package proxyapp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/account"
	"github.com/tollgate/tollgate/internal/apikey"
	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/internal/db"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/invalidate"
	"github.com/tollgate/tollgate/internal/limit"
	"github.com/tollgate/tollgate/internal/logging"
	"github.com/tollgate/tollgate/internal/relay"
	"github.com/tollgate/tollgate/internal/schedule"
	"github.com/tollgate/tollgate/internal/secret"
	"github.com/tollgate/tollgate/internal/usage"
)

// ShutdownTimeout bounds how long in-flight requests and streams may take to finish
// after SIGTERM.
const ShutdownTimeout = 60 * time.Second

// Run reads the environment and serves until ctx ends.
func Run(ctx context.Context) error {
	cfg, err := config.LoadProxy()
	if err != nil {
		return err
	}
	log := logging.New(os.Stderr, cfg.LogFormat, cfg.LogLevel)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on PROXY_ADDR %s: %w", cfg.Addr, err)
	}
	return Serve(ctx, cfg, log, ln)
}

// Deps are the proxy's long-lived dependencies.
type Deps struct {
	Pool   *pgxpool.Pool
	Redis  *redis.Client
	Gate   *limit.Gate
	Server *relay.Server
	// Journal is closed last: its file goes if every event it holds was delivered.
	Journal *usage.Journal
	// feedPool: the invalidation feed's connection.
	feedPool *pgxpool.Pool
}

// Build connects to PostgreSQL and Redis and assembles the relay server with warm caches.
// While PostgreSQL is unreachable it waits (db.Wait) until ctx ends: a proxy started
// beside a database that is starting or failing over comes up when the database does.
// Redis is not needed to start: without it requests get a 503 until it answers.
func Build(ctx context.Context, cfg config.Proxy, log *slog.Logger) (*Deps, error) {
	pool, err := db.OpenWait(ctx, cfg.DatabaseURL, 10, log)
	if err != nil {
		return nil, err
	}
	ropts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("parse REDIS_URL: %w", err)
	}
	// Script calls leave in shared pipelines (limit/batch.go) and lease renewals are
	// batched, so a moderate pool serves 10,000 open streams; each connection is also a
	// file descriptor, which open streams need two of.
	ropts.PoolSize = 512
	ropts.PoolTimeout = 5 * time.Second
	ropts.MinIdleConns = 16
	// Fail fast when Redis is away: the request gets a clear 503 in a second or two
	// instead of hanging through go-redis's default retries.
	ropts.DialTimeout, ropts.ReadTimeout, ropts.WriteTimeout = time.Second, 2*time.Second, 2*time.Second
	// No retries: go-redis would send a whole pipeline again after a read timeout, and
	// the scripts in it (completions: XADD, DECRBY) may already have run. Callers decide.
	ropts.MaxRetries = -1
	// One dial per new connection: go-redis otherwise dials a refusing Redis five times,
	// 100 ms apart, so each request waited half a second for its 503 (or, serving without Redis,
	// for its admission) until the pool had failed PoolSize dials.
	ropts.DialerRetries = 1
	// RESP2: with RESP3 go-redis checks every connection for push notifications before
	// each command, an extra read per round trip on the hot path; Tollgate uses none.
	ropts.Protocol = 2
	box, err := secret.NewBox(cfg.Secret(), secret.PurposeAccount)
	if err != nil {
		pool.Close()
		return nil, err
	}
	rdb := redis.NewClient(ropts)
	// A hung Redis costs one timeout a second, not one per call (limit.Breaker).
	rdb.AddHook(limit.NewBreaker(time.Second))
	q := sqlc.New()
	accounts := schedule.NewStore(pool, box, log)
	pricing := billing.NewPricing(pool)
	loadKey := apikey.DBLoader(pool)
	keys := apikey.NewCache(func(ctx context.Context, hash []byte) (apikey.Info, error) {
		ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		defer cancel()
		return loadKey(ctx, hash)
	}, 5*time.Minute)
	prefixes := func(ctx context.Context) ([][]byte, error) { return q.APIKeyHashPrefixList(ctx, pool) }
	// The invalidation feed starts before the caches load, so that no change committed
	// in between goes unseen. It reads on a connection of its own: a background read
	// each second, kept out of the pool of the requests' lookups (and out of
	// tollgate_db_acquires_total, the hot path's budget).
	feedPool, err := db.OpenLazy(cfg.DatabaseURL, 1)
	if err != nil {
		rdb.Close()
		pool.Close()
		return nil, err
	}
	feed := invalidate.NewFeed(feedPool)
	warm := func(ctx context.Context) error {
		if err := feed.Start(ctx); err != nil {
			return err
		}
		return errors.Join(accounts.Reload(ctx), pricing.Reload(ctx), keys.ReloadKnown(ctx, prefixes))
	}
	if err := db.Wait(ctx, log, "PostgreSQL", warm); err != nil {
		rdb.Close()
		pool.Close()
		feedPool.Close()
		return nil, err
	}
	spoolDir := cfg.SpoolDir
	if spoolDir == "" {
		spoolDir = filepath.Join(os.TempDir(), "tollgate-usage-spool")
	}
	spool, err := usage.NewSpool(spoolDir, log)
	if err != nil {
		rdb.Close()
		pool.Close()
		feedPool.Close()
		return nil, err
	}
	// The journal's file names carry the installation (database and Redis prefix): a
	// directory shared with another installation's proxies never mixes their events.
	pc := pool.Config().ConnConfig
	sum := sha256.Sum256([]byte(pc.Host + ":" + strconv.Itoa(int(pc.Port)) + "/" + pc.Database + "|" + cfg.RedisPrefix))
	journalTag := hex.EncodeToString(sum[:8])
	journal, err := usage.OpenJournal(spoolDir, journalTag, 0)
	if err != nil {
		// Serving without it beats not serving: only a kill of this process between an
		// answer and its completion would then lose that request's bill.
		log.Error("no usage journal; a proxy killed mid-completion loses those bills", "err", err)
	}
	refresher := account.NewRefresher(pool, rdb, cfg.RedisPrefix, box, cfg.OAuth.Clients(), log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	instrument(reg, pool, rdb)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tollgate_usage_spool_bytes",
		Help: "Usage events on the proxy's local spool (PROXY_SPOOL_DIR), waiting for Redis or PostgreSQL to take them.",
	}, func() float64 { return float64(spool.Bytes()) }))
	gate := limit.NewGate(rdb, cfg.RedisPrefix, func(ctx context.Context, userID int64) (int64, error) {
		ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		defer cancel()
		return q.UserBalanceGet(ctx, pool, userID)
	}, func(ctx context.Context, userID, keyID int64, since time.Time) (int64, error) {
		ctx, cancel := context.WithTimeout(ctx, spendTimeout)
		defer cancel()
		if keyID == 0 {
			return q.UsageEventSpendByUserSince(ctx, pool, sqlc.UsageEventSpendByUserSinceParams{UserID: userID, Since: since})
		}
		return q.UsageEventSpendByKeySince(ctx, pool, sqlc.UsageEventSpendByKeySinceParams{APIKeyID: keyID, Since: since})
	}, cfg.Limits)
	gate.SetLogger(log)
	instrumentGate(reg, gate)
	// Usage stored without its completion moved no counter in Redis: the proxy resets
	// the counters of what it stores itself, the worker those of what it appends
	// (marked Late). A reset Redis refuses is retried by the spool loop.
	ingest := func(ctx context.Context, evs []usage.Event) error {
		if _, err := usage.Ingest(ctx, pool, evs); err != nil {
			return err
		}
		stored := make([]limit.Stored, len(evs))
		for i, ev := range evs {
			stored[i] = limit.Stored{UserID: ev.UserID, KeyID: ev.KeyID, Time: ev.Time}
		}
		if err := gate.ResetCounters(ctx, stored...); err != nil {
			log.Warn("usage stored straight in PostgreSQL; its balance snapshot and spend counters are reset when Redis answers", "err", err)
		}
		return nil
	}
	deliver := func(ctx context.Context, evs []usage.Event) error {
		if err := usage.Append(ctx, rdb, cfg.RedisPrefix, evs); err == nil {
			return nil
		}
		return ingest(ctx, evs)
	}
	srv := relay.New(relay.Config{
		Log:         log,
		Keys:        keys,
		KeyPrefixes: prefixes,
		Accounts:    accounts,
		Pricing:     pricing,
		Gate:        gate,
		Redis:       rdb,
		Prefix:      cfg.RedisPrefix,
		Invalidations: func(ctx context.Context) ([]invalidate.Event, error) {
			ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
			defer cancel()
			return feed.Poll(ctx)
		},
		Fallback: func(ctx context.Context, ev usage.Event) error {
			return ingest(ctx, []usage.Event{ev})
		},
		Recorded: func(ctx context.Context, requestID string) (bool, error) {
			_, err := sqlc.New().UsageEventGetByRequestID(ctx, pool, requestID)
			if errors.Is(err, pgx.ErrNoRows) {
				return false, nil
			}
			return err == nil, err
		},
		Redeliver:  ingest,
		Spool:      spool,
		SpoolEvery: cfg.SpoolEvery,
		Deliver:    deliver,
		Journal:    journal,
		ReplayJournals: func(ctx context.Context) error {
			_, err := usage.ReplayJournals(ctx, spoolDir, journalTag, deliver, log)
			return err
		},
		Registry:        reg,
		HeaderTimeout:   cfg.UpstreamHeaderTimeout,
		IdleTimeout:     cfg.UpstreamIdleTimeout,
		ResponseTimeout: cfg.UpstreamResponseTimeout,
		Refresh:         refresher.Refresh,
		QuotaFlushEvery: cfg.QuotaFlushEvery,
		SetAccountQuota: func(ctx context.Context, id int64, snapshot []byte) error {
			return q.AccountSetRatelimit(ctx, pool, sqlc.AccountSetRatelimitParams{ID: id, Ratelimit: snapshot})
		},
		SetAccountState: func(ctx context.Context, id int64, state, reason string, until *time.Time) error {
			err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				if err := q.AccountSetState(ctx, tx, sqlc.AccountSetStateParams{ID: id, State: state, StateReason: reason, StateUntil: until}); err != nil {
					return err
				}
				return invalidate.Record(ctx, tx, invalidate.Event{Kind: invalidate.Accounts})
			})
			if err != nil {
				return err
			}
			return invalidate.Publish(ctx, rdb, cfg.RedisPrefix, invalidate.Event{Kind: invalidate.Accounts})
		},
		// Ready: the proxy can serve. PostgreSQL is not on a request's path once the
		// caches are warm (Build waited for that): known keys, accounts and prices are
		// in memory and usage waits in Redis, so a proxy that cannot reach the database
		// stays ready. Checking it here would let a load balancer take every proxy out
		// of rotation during a database outage, stopping the traffic the caches carry.
		// Redis is on every request's path, unless the operator chose to serve without it.
		Ready: func(ctx context.Context) error {
			if err := rdb.Ping(ctx).Err(); err != nil && cfg.Limits.RedisOutage != limit.OutageServe {
				return errors.New("redis unreachable")
			}
			return nil
		},
	})
	return &Deps{Pool: pool, Redis: rdb, Gate: gate, Server: srv, Journal: journal, feedPool: feedPool}, nil
}

// Close releases the connections.
func (d *Deps) Close() {
	d.Redis.Close()
	d.Pool.Close()
	d.feedPool.Close()
	d.Journal.Close() //nolint:errcheck // a file left behind is replayed, harmlessly
}

// A request reads PostgreSQL only for what the caches and Redis lack: a key not cached
// yet, a balance snapshot or a spend counter to load. Each such read has a deadline, so a
// hung PostgreSQL (a failover under way, a network dropping packets) costs the request a
// 503 after that long instead of holding it, and a pool connection, until the client
// gives up; known keys are served meanwhile as usual.
const (
	lookupTimeout = 5 * time.Second  // one row by its key: an API key, a balance
	spendTimeout  = 15 * time.Second // a key's or user's spend since the day or month began
)

// Serve runs the proxy on ln until ctx ends, then drains: /readyz turns 503, new
// connections are refused, and in-flight requests and streams get ShutdownTimeout to
// finish. Until Build has what it needs from PostgreSQL, ln is served by relay.Starting.
func Serve(ctx context.Context, cfg config.Proxy, log *slog.Logger, ln net.Listener) error {
	var handler atomic.Pointer[http.Handler]
	starting := relay.Starting("waiting for PostgreSQL")
	handler.Store(&starting)
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			(*handler.Load()).ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()

	deps, err := Build(ctx, cfg, log)
	if err != nil {
		hs.Close()
		if ctx.Err() != nil {
			log.Info("proxy stopped before it could start", "err", err)
			return nil
		}
		return err
	}
	defer deps.Close()
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	deps.Server.PrepareRedis(ctx)
	go deps.Server.Run(runCtx)
	if cfg.AdaptiveProcs && os.Getenv("GOMAXPROCS") == "" {
		go adaptProcs(runCtx, log, 50*time.Millisecond)
	}
	ready := deps.Server.Handler()
	handler.Store(&ready)
	log.Info("proxy listening", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("proxy shutting down; draining in-flight requests", "timeout", ShutdownTimeout)
	deps.Server.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("shutdown timed out; closing remaining connections", "err", err)
		hs.Close()
	}
	if !deps.Server.WaitCompletions(10 * time.Second) {
		log.Error("shutdown: usage completions still running after 10 s")
	}
	// Admissions reserved for requests this process will not serve go back at once
	// rather than when their leases expire.
	deps.Gate.ReleaseReserved(context.Background())
	log.Info("proxy stopped")
	return nil
}
