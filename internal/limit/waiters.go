package limit

import (
	"context"
	"strings"
	"sync"
	"time"
)

// waiters parks requests waiting for a slot until a release on one of their scopes
// ("u:<user>", "k:<key>", "a:<account>") is published. A backstop timer re-checks now
// and then, because a lease that expires (its process died) publishes nothing.
type waiters struct {
	mu sync.Mutex
	m  map[string]map[chan struct{}]struct{}
}

const backstop = 2 * time.Second

func newWaiters() *waiters { return &waiters{m: map[string]map[chan struct{}]struct{}{}} }

func (w *waiters) wait(ctx context.Context, scopes []string, deadline time.Time) error {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	for _, s := range scopes {
		set := w.m[s]
		if set == nil {
			set = map[chan struct{}]struct{}{}
			w.m[s] = set
		}
		set[ch] = struct{}{}
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		for _, s := range scopes {
			delete(w.m[s], ch)
			if len(w.m[s]) == 0 {
				delete(w.m, s)
			}
		}
		w.mu.Unlock()
	}()
	t := time.NewTimer(min(time.Until(deadline), backstop))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-ch:
	case <-t.C:
	}
	return nil
}

// wake signals the waiters of every scope in a space-separated release message.
func (w *waiters) wake(msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range strings.Fields(msg) {
		for ch := range w.m[s] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}
