package limit

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// tracked holds the leases of requests this process is serving, so one loop can renew
// them all in a few pipelined round trips every LeaseTTL/3 — instead of a timer and a
// goroutine per request.
type tracked struct {
	mu     sync.Mutex
	leases map[string]Lease
}

// Track registers (or updates, after a failover) a lease for renewal until Untrack.
// A lease admitted without Redis has nothing in Redis to renew.
func (g *Gate) Track(l Lease) {
	if l.local {
		return
	}
	g.tracked.mu.Lock()
	if g.tracked.leases == nil {
		g.tracked.leases = map[string]Lease{}
	}
	g.tracked.leases[l.RequestID] = l
	g.tracked.mu.Unlock()
}

// Untrack stops renewing a request's lease.
func (g *Gate) Untrack(requestID string) {
	g.tracked.mu.Lock()
	delete(g.tracked.leases, requestID)
	g.tracked.mu.Unlock()
}

// renewLoop renews every tracked lease that has lived past a third of the TTL.
func (g *Gate) renewLoop(ctx context.Context) {
	every := g.opts.LeaseTTL / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.tracked.mu.Lock()
		due := make([]Lease, 0, len(g.tracked.leases))
		for _, l := range g.tracked.leases {
			due = append(due, l)
		}
		g.tracked.mu.Unlock()
		exp := float64(time.Now().Add(g.opts.LeaseTTL).UnixMilli())
		for len(due) > 0 {
			batch := due[:min(len(due), 500)]
			due = due[len(batch):]
			pipe := g.rdb.Pipeline()
			for _, l := range batch {
				// XX: never resurrect a lease completion already released. The journal
				// entry (a stream's checkpoint) lives as long as the lease.
				z := redis.Z{Score: exp, Member: l.RequestID}
				if l.holdsUser() {
					pipe.ZAddXX(ctx, g.userLeases(l.UserID), z)
				}
				if l.holdsKey() {
					pipe.ZAddXX(ctx, g.keyLeases(l.KeyID), z)
				}
				pipe.ZAddXX(ctx, g.accountLeases(l.AccountID), z)
				pipe.ZAddXX(ctx, g.journalKey(), z)
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := pipe.Exec(rctx)
			cancel()
			if err != nil && g.log != nil {
				g.log.Warn("renew concurrency leases", "leases", len(batch), "err", err)
			}
		}
	}
}
