package usage

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Spool is the proxy's last resort for usage it could hand neither to Redis nor to
// PostgreSQL (both down or overloaded): events are appended, fsynced, to a local file and
// delivered later by Replay. Ingestion is idempotent by request id, so an event that was
// delivered and spooled too is still billed once.
//
// Each process writes its own file, holding an exclusive lock on it; Replay delivers and
// removes the files nobody holds — its own after closing it, and those of processes that
// died — so several proxies may share the directory.
type Spool struct {
	dir string
	log *slog.Logger

	mu sync.Mutex
	f  *os.File
}

// NewSpool uses dir, creating it if needed.
func NewSpool(dir string, log *slog.Logger) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("usage spool directory %s: %w", dir, err)
	}
	return &Spool{dir: dir, log: log}, nil
}

// Write appends an event durably.
func (s *Spool) Write(ev Event) error {
	line, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		name := filepath.Join(s.dir, "usage-"+strconv.FormatInt(time.Now().UnixNano(), 10)+"-"+strconv.Itoa(os.Getpid())+".jsonl")
		f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("open usage spool: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			return fmt.Errorf("lock usage spool: %w", err)
		}
		s.f = f
	}
	if _, err := s.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write usage spool: %w", err)
	}
	return s.f.Sync()
}

// Replay delivers every spooled event it can and removes the files it emptied.
func (s *Spool) Replay(ctx context.Context, deliver func(context.Context, []Event) error) error {
	s.mu.Lock()
	if s.f != nil {
		s.f.Close() // releases the lock: the file is replayed below, new events start a new one
		s.f = nil
	}
	s.mu.Unlock()
	files, err := s.files()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range files {
		if err := s.replayFile(ctx, name, deliver); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Bytes is the size of the spool's files: usage events waiting on this disk for Redis or
// PostgreSQL (this process's and any a dead process left). Not zero means both stores
// refused an event, or a file holds a line nobody can read.
func (s *Spool) Bytes() int64 {
	files, _ := s.files()
	var n int64
	for _, name := range files {
		if fi, err := os.Stat(name); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// files are the spool's files: usage-<ns>-<pid>.jsonl, as Write names them.
func (s *Spool) files() ([]string, error) {
	return filepath.Glob(filepath.Join(s.dir, "usage-*.jsonl"))
}

func (s *Spool) replayFile(ctx context.Context, name string, deliver func(context.Context, []Event) error) error {
	f, err := openOrphan(name)
	if f == nil || err != nil {
		return err
	}
	defer f.Close()
	var events []Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			s.log.Error("unreadable line in usage spool; kept for a person to look at", "file", name, "err", err)
			return nil
		}
		events = append(events, ev)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read usage spool %s: %w", name, err)
	}
	if len(events) > 0 {
		if err := deliver(ctx, events); err != nil {
			return fmt.Errorf("deliver %d spooled usage events: %w", len(events), err)
		}
		s.log.Info("delivered spooled usage events", "file", name, "events", len(events))
	}
	return os.Remove(name)
}

// openOrphan opens a spool or journal file for replay, locked, if no living process
// holds it. It returns nil, and no error, when one does, or when another replay removed
// the file between the open and the lock (or before).
func openOrphan(name string) (*os.File, error) {
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, nil // a living process's
	}
	if _, err := os.Stat(name); err != nil {
		f.Close()
		return nil, nil // replayed and removed by another process before our lock
	}
	return f, nil
}
