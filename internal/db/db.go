// Package db opens PostgreSQL pools and applies migrations. The sqlc-generated queries
// live in internal/db/sqlc; this package knows no domain.
package db

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Open connects a pool and checks the server answers. maxConns 0 keeps pgx's default.
func Open(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	pool, err := OpenLazy(url, maxConns)
	if err != nil {
		return nil, err
	}
	if err := ping(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// OpenLazy makes a pool without connecting: connections are made when first needed. Only
// a malformed URL is an error.
func OpenLazy(url string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	cfg.MaxConnIdleTime = 5 * time.Minute
	// A server that accepts the TCP connection and then says nothing (hung, or a network
	// dropping packets) would otherwise hold a new connection, and whoever waits for it,
	// until the caller's deadline, if it has one. DATABASE_URL's connect_timeout wins.
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	// Rollups truncate timestamps to hours; in UTC every hour is a whole hour.
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return pool, nil
}

// OpenWait is Open for a process starting while PostgreSQL may not answer yet (it is
// starting too, failing over, or briefly away): as long as the server is unreachable it
// tries again, with a growing pause up to 5 s, logging each failure, until ctx ends. An
// error that waiting cannot cure — a malformed URL, a refused password, a database that
// does not exist — is returned at once, so a misconfigured process still fails loudly.
func OpenWait(ctx context.Context, url string, maxConns int32, log *slog.Logger) (*pgxpool.Pool, error) {
	pool, err := OpenLazy(url, maxConns)
	if err != nil {
		return nil, err
	}
	if err := Wait(ctx, log, "PostgreSQL", func(ctx context.Context) error { return ping(ctx, pool) }); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func ping(ctx context.Context, pool *pgxpool.Pool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("connect to database: %w", err)
	}
	return nil
}

// Wait runs try until it succeeds, for as long as it fails because PostgreSQL (or
// another server named by what) is unreachable (Unavailable), pausing 250 ms, then twice
// as long each time up to 5 s. Any other error, and ctx's end, is returned.
func Wait(ctx context.Context, log *slog.Logger, what string, try func(context.Context) error) error {
	pause := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := try(ctx)
		if err == nil {
			if attempt > 1 {
				log.Info(what+" answers; starting", "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stopped while waiting for %s: %w", what, err)
		}
		if !Unavailable(err) {
			return err
		}
		log.Warn("waiting for "+what, "attempt", attempt, "retry_in", pause, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped while waiting for %s: %w", what, err)
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// Unavailable reports whether err means PostgreSQL could not be reached or is not
// accepting work for now (down, starting, shutting down, out of connections), as opposed
// to a refused login, a missing database, a bug or a bad query.
func Unavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", "53", "57": // connection exception, insufficient resources, operator intervention
			return true
		}
		return false
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connErr) || errors.As(err, &netErr) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, net.ErrClosed)
}
