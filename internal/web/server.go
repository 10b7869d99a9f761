// Package web is cmd/web: the server-rendered pages (templ + htmx) where users sign in,
// manage API keys and follow their usage and wallet. Every route is listed in routes.go;
// each handler lives in a file named after its resource and action.
package web

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/alexedwards/scs/pgxstore"
	"github.com/alexedwards/scs/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/auth"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/limit"
)

// Config is what the web app needs from its process.
type Config struct {
	// BaseURL is the public URL of the app. Its origin is trusted for state-changing
	// requests, and an https:// BaseURL makes the session cookie Secure.
	BaseURL string
	// ProxyPublicURL is shown to users as where to point their clients.
	ProxyPublicURL string
	// RedisPrefix namespaces every Redis key and channel of this installation.
	RedisPrefix string
	// LoginLimit attempts in any span of LoginWindow are allowed per client IP and per
	// email (auth.Throttle). Zero means 10 per 10 minutes.
	LoginLimit  int64
	LoginWindow time.Duration
	// RedeemLimit attempts per RedeemWindow at the redeem-a-code form are allowed per
	// user and per client IP. Zero means 10 per 15 minutes.
	RedeemLimit  int64
	RedeemWindow time.Duration

	Logger *slog.Logger
	DB     *pgxpool.Pool
	Redis  redis.UniversalClient
}

// Server holds the web app's dependencies and its routed handler.
type Server struct {
	log           *slog.Logger
	db            *pgxpool.Pool
	rdb           redis.UniversalClient
	q             *sqlc.Queries
	redisPrefix   string
	proxyURL      string
	secure        bool
	sessions      *scs.SessionManager
	stopCleanup   context.CancelFunc
	cleanupDone   chan struct{}
	crossOrigin   *http.CrossOriginProtection
	loginThrottle *auth.Throttle
	// redeemThrottle slows down guessing of redeem codes.
	redeemThrottle *auth.Throttle
	// gate drops users' balance snapshots in Redis after committed credits, so the
	// proxies' admission sees them at once (only RefreshBalance is used; no loaders
	// needed). refreshing holds the users whose drop is being retried (admin.go).
	gate       *limit.Gate
	refreshing sync.Map
	// life ends with Close: background work (the session sweep, retried drops) stops.
	life    context.Context
	handler http.Handler
}

// New builds the app. Call Close when done to stop the session store's cleanup.
func New(cfg Config) (*Server, error) {
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || base.Host == "" || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("BASE_URL must be an absolute http(s) URL, not %q", cfg.BaseURL)
	}
	if cfg.LoginLimit == 0 {
		cfg.LoginLimit = 10
	}
	if cfg.LoginWindow == 0 {
		cfg.LoginWindow = 10 * time.Minute
	}
	if cfg.RedeemLimit == 0 {
		cfg.RedeemLimit = 10
	}
	if cfg.RedeemWindow == 0 {
		cfg.RedeemWindow = 15 * time.Minute
	}
	s := &Server{
		log:            cfg.Logger,
		db:             cfg.DB,
		rdb:            cfg.Redis,
		q:              sqlc.New(),
		redisPrefix:    cfg.RedisPrefix,
		proxyURL:       cfg.ProxyPublicURL,
		secure:         base.Scheme == "https",
		loginThrottle:  auth.NewThrottle(cfg.Redis, cfg.RedisPrefix, "login", cfg.LoginLimit, cfg.LoginWindow),
		redeemThrottle: auth.NewThrottle(cfg.Redis, cfg.RedisPrefix, "redeem", cfg.RedeemLimit, cfg.RedeemWindow),
		gate:           limit.NewGate(cfg.Redis, cfg.RedisPrefix, nil, nil, limit.Options{}),
	}
	// pgxstore's own cleanup goroutine cannot be stopped without a data race, so the
	// store runs without it and Server sweeps expired sessions itself.
	s.sessions = newSessionManager(pgxstore.NewWithCleanupInterval(cfg.DB, 0), s.secure, s.serverError)

	s.crossOrigin = http.NewCrossOriginProtection()
	if err := s.crossOrigin.AddTrustedOrigin(base.Scheme + "://" + base.Host); err != nil {
		return nil, fmt.Errorf("trust BASE_URL origin: %w", err)
	}
	s.crossOrigin.SetDenyHandler(http.HandlerFunc(s.crossOriginDenied))

	s.handler = s.routes()

	ctx, cancel := context.WithCancel(context.Background())
	s.life, s.stopCleanup, s.cleanupDone = ctx, cancel, make(chan struct{})
	go s.sweepSessions(ctx, 10*time.Minute)
	return s, nil
}

// ServeHTTP serves the app.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Close stops background work (the expired-session sweep) and waits for it.
func (s *Server) Close() {
	s.stopCleanup()
	<-s.cleanupDone
}

// sweepSessions deletes expired sessions every interval until ctx ends. Every instance
// sweeps; the DELETE is idempotent, so overlapping sweeps are harmless.
func (s *Server) sweepSessions(ctx context.Context, interval time.Duration) {
	defer close(s.cleanupDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.q.SessionDeleteExpired(ctx, s.db)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("delete expired sessions", "error", err)
			continue
		}
		if n > 0 {
			s.log.Debug("deleted expired sessions", "count", n)
		}
	}
}
