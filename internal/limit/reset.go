package limit

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Stored names a usage event that reached PostgreSQL without its completion moving the
// Redis counters it counts in: the proxy stored it itself because Redis failed, or
// delivered it from its spool or a dead proxy's journal.
type Stored struct {
	UserID, KeyID int64
	Time          time.Time
}

// staleCounters are the counter keys to delete, each with the number of the call that
// last asked for it: a call forgets only the keys no later call asked for again (whose
// own delete may have failed).
type staleCounters struct {
	mu   sync.Mutex
	keys map[string]uint64
	call uint64
	// failing: a delete failed since the last one that went through (Redis was away).
	failing bool
}

// settleAfter: counters a retry finally deleted are deleted once more this much later.
// While Redis was away the workers could not ingest the usage stream either, and the
// events it held from before (which the deleted snapshot had counted) are not in the
// ledger the first reload reads; a few seconds after Redis returns, they are.
const settleAfter = 3 * time.Second

// maxStaleCounters bounds the keys kept for a later retry while Redis is away (four per
// stored event's user, key and day; a few MB at most). Keys past it are not kept: their
// snapshots still expire after SnapshotTTL.
const maxStaleCounters = 1 << 16

// ResetCounters deletes the counters the stored events count in — the users' balance
// snapshots and the keys' and users' spend counters (CounterKeys) — so that the next
// admission reloads them from the ledger and the usage events, which now include those
// events. Deleting is exact where debiting would not be: an event may also have been
// billed by a completion that ran but whose reply was lost, and a reload counts it once.
//
// The keys Redis refuses are kept and retried with the next call; the proxy's spool loop
// calls it with no events every few seconds. While keys are pending (Redis failed
// recently) a call with events only adds theirs, to be deleted with the rest by that
// retry: during an outage every fallback would otherwise wait for Redis once more. Until
// then a balance snapshot may overstate the balance by those events, for at most
// SnapshotTTL, and a spend counter may understate the spend until it is reset.
func (g *Gate) ResetCounters(ctx context.Context, stored ...Stored) error {
	g.stale.mu.Lock()
	// The keys are tagged for the next call to delete: this one, or (when queued) the
	// retry, since a call running now may have sent its delete before these events
	// were stored.
	call := g.stale.call + 1
	queue := len(stored) > 0 && len(g.stale.keys) > 0
	for _, s := range stored {
		g.stale.add(CounterKeys(g.prefix, s.UserID, s.KeyID, s.Time), call)
	}
	if queue {
		g.stale.mu.Unlock()
		return nil
	}
	g.stale.call = call
	keys := make([]string, 0, len(g.stale.keys))
	for k := range g.stale.keys {
		keys = append(keys, k)
	}
	g.stale.mu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	if err := g.drop(ctx, keys...); err != nil {
		g.stale.mu.Lock()
		g.stale.failing = true
		g.stale.mu.Unlock()
		return fmt.Errorf("%w: reset %d counters of usage stored without its completion (retried): %v", ErrUnavailable, len(keys), err)
	}
	g.stale.mu.Lock()
	for _, k := range keys {
		if g.stale.keys[k] <= call {
			delete(g.stale.keys, k)
		}
	}
	settle := g.stale.failing
	g.stale.failing = false
	g.stale.mu.Unlock()
	if settle {
		time.AfterFunc(settleAfter, func() { g.settle(keys) })
	}
	return nil
}

// settle deletes keys once more (settleAfter); if Redis refuses, they join the keys
// ResetCounters retries.
func (g *Gate) settle(keys []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.drop(ctx, keys...); err != nil {
		g.stale.mu.Lock()
		g.stale.add(keys, g.stale.call+1)
		g.stale.failing = true
		g.stale.mu.Unlock()
	}
}

// add marks keys as asked for by call (the caller holds mu).
func (c *staleCounters) add(keys []string, call uint64) {
	if c.keys == nil {
		c.keys = map[string]uint64{}
	}
	for _, k := range keys {
		if _, ok := c.keys[k]; ok || len(c.keys) < maxStaleCounters {
			c.keys[k] = call
		}
	}
}

// PendingResets is the number of counter keys waiting for Redis to delete them.
func (g *Gate) PendingResets() int {
	g.stale.mu.Lock()
	defer g.stale.mu.Unlock()
	return len(g.stale.keys)
}
