package db_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/db"
	"github.com/tollgate/tollgate/internal/testenv"
)

// syncBuffer is a log destination the waiting goroutine and the test can share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestOpenWaitWaitsForTheServer: a process starting while PostgreSQL is down gets its
// pool once the server is up, having logged that it waits, and why.
func TestOpenWaitWaitsForTheServer(t *testing.T) {
	pg := testenv.Postgres(t)
	pg.Stop()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	const down = 1500 * time.Millisecond
	go func() {
		time.Sleep(down)
		pg.Start()
	}()
	start := time.Now()
	pool, err := db.OpenWait(context.Background(), pg.URL, 2, log)
	if err != nil {
		t.Fatalf("OpenWait: %v", err)
	}
	defer pool.Close()
	if took := time.Since(start); took < down {
		t.Fatalf("a pool after %s, while the server was down for %s", took, down)
	}
	var one int
	if err := pool.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("query on the pool: %d %v", one, err)
	}
	if got := logs.String(); !strings.Contains(got, "waiting for PostgreSQL") || !strings.Contains(got, "PostgreSQL answers; starting") {
		t.Fatalf("logs do not say it waited:\n%s", got)
	}
	if u, _ := url.Parse(pg.URL); u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" && strings.Contains(logs.String(), p) {
			t.Fatal("the logs show the database password")
		}
	}
}

// TestOpenWaitFailsAtOnceOnWhatWaitingCannotCure: a malformed URL or a database that
// does not exist is an error straight away, not a wait.
func TestOpenWaitFailsAtOnceOnWhatWaitingCannotCure(t *testing.T) {
	u, err := url.Parse(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/no_such_database_here"
	for name, dsn := range map[string]string{"missing database": u.String(), "malformed URL": "postgres://%zz"} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		start := time.Now()
		pool, err := db.OpenWait(ctx, dsn, 1, slog.New(slog.DiscardHandler))
		cancel()
		if err == nil {
			pool.Close()
			t.Fatalf("%s: OpenWait succeeded", name)
		}
		if took := time.Since(start); took > 5*time.Second || db.Unavailable(err) {
			t.Fatalf("%s: %v after %s; want an error that is not 'unavailable', at once", name, err, took)
		}
	}
}

// TestOpenWaitStopsWithItsContext: a process told to stop while it waits stops.
func TestOpenWaitStopsWithItsContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: every connection is refused
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = db.OpenWait(ctx, "postgres://tollgate@"+addr+"/tollgate?sslmode=disable", 1, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "stopped while waiting for PostgreSQL") {
		t.Fatalf("OpenWait with nothing listening: %v", err)
	}
	if took := time.Since(start); took < time.Second || took > 4*time.Second {
		t.Fatalf("OpenWait returned after %s, want when its context ended (1.2 s)", took)
	}
}
