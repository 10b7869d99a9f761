package relay

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/redisinfo"
	"github.com/tollgate/tollgate/internal/usage"
)

// Redis acknowledges a completion's usage event before it is safe: until its append-only
// file reaches the disk (within a second or two with appendfsync everysec) a crash of its
// machine loses it, and so does a failover to a replica the write had not reached yet, or
// a restart of a Redis run without AOF. Events a worker has not stored by then are gone,
// and their requests, served, would go unbilled.
//
// So the proxy keeps what Redis acknowledged in its last few seconds (recentEvents) and
// watches Redis's identity (its run_id, which a restart or a failover changes). When the
// identity changes, the events kept are stored straight in PostgreSQL (Config.Redeliver).
// Storing is idempotent by request id, so those Redis did keep, or a worker had stored,
// are billed once all the same. An event leaves the keep after it has lived
// recentGenerations-1 to recentGenerations seconds of a Redis answering with the same
// identity; while Redis does not answer, nothing leaves.
//
// A Redis without AOF loses, on a restart, events older than that too (any a worker had
// not stored yet: normally none, as workers store within a fraction of a second); the
// worker warns about such a Redis (tollgate_redis_aof_enabled).

// recentGenerations: events are kept for two to three seconds of Redis's confirmed life.
const recentGenerations = 3

// recentMax bounds the keep (about 65 MB of events): should the ages stop coming while
// completions still succeed, the oldest generation goes.
const recentMax = 100_000

// recentEvents holds usage events (their JSON) by the second Redis acknowledged them in.
type recentEvents struct {
	mu   sync.Mutex
	gens [recentGenerations][][]byte // gens[0] is the current second's
	n    int                         // events held
	// off: Redis's identity cannot be watched (INFO refused), so nothing is kept.
	off atomic.Bool
}

func (r *recentEvents) add(payload []byte) {
	if r.off.Load() {
		return
	}
	r.mu.Lock()
	for r.n >= recentMax {
		r.n -= len(r.gens[recentGenerations-1])
		r.shift()
	}
	r.gens[0] = append(r.gens[0], payload)
	r.n++
	r.mu.Unlock()
}

// age drops the oldest generation and starts a new one.
func (r *recentEvents) age() {
	r.mu.Lock()
	r.n -= len(r.gens[recentGenerations-1])
	r.shift()
	r.mu.Unlock()
}

// shift moves every generation one older, the oldest out (the caller holds mu).
func (r *recentEvents) shift() {
	copy(r.gens[1:], r.gens[:recentGenerations-1])
	r.gens[0] = nil
}

// take empties the keep and returns what it held.
func (r *recentEvents) take() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := make([][]byte, 0, r.n)
	for i := range r.gens {
		all = append(all, r.gens[i]...)
		r.gens[i] = nil
	}
	r.n = 0
	return all
}

// PrepareRedis readies Redis before the proxy serves: it reads Redis's identity, so that
// the events of the first requests are known to be in that Redis's keep, and loads the
// gate's scripts. Call it before Run. If Redis does not answer, the first identity the
// watch learns is taken as theirs (they could only have been acknowledged once it
// answered), and the scripts load on first use.
func (s *Server) PrepareRedis(ctx context.Context) {
	if s.cfg.Redis == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if id, err := redisinfo.RunID(cctx, s.cfg.Redis); err == nil {
		s.redisID = id
	}
	if s.cfg.Gate != nil {
		s.cfg.Gate.LoadScripts(cctx) //nolint:errcheck // loaded on first use otherwise
	}
}

// redisWatchLoop ages the keep every second Redis answers with the identity it had, and
// hands the keep to redeliver when the identity changes.
func (s *Server) redisWatchLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	known := s.redisID
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		id, err := redisinfo.RunID(cctx, s.cfg.Redis)
		cancel()
		switch {
		case infoRefused(err):
			// Redis answers but will not say who it is (INFO renamed or not allowed):
			// its identity cannot be watched, so nothing is kept.
			s.recent.off.Store(true)
			s.recent.take()
			s.log.Warn("cannot watch Redis's identity (INFO server refused); usage events a restarted Redis loses are not stored again", "err", err)
			return
		case err != nil:
			// Not answering: keep everything until it does.
		case known == "" || id == known:
			known = id
			s.recent.age()
		default:
			known = id
			if s.cfg.Gate != nil {
				s.cfg.Gate.LoadScripts(ctx) //nolint:errcheck // a new Redis knows none of them
			}
			s.redeliver(ctx, s.recent.take())
		}
	}
}

// redeliver stores, straight in PostgreSQL, the events a Redis that changed identity had
// acknowledged in its last seconds; what PostgreSQL refuses goes to the spool.
func (s *Server) redeliver(ctx context.Context, payloads [][]byte) {
	if len(payloads) == 0 {
		return
	}
	evs := make([]usage.Event, 0, len(payloads))
	for _, p := range payloads {
		var ev usage.Event
		if err := usage.DecodeEvent(string(p), &ev); err != nil {
			s.log.Error("undecodable usage event kept for Redis's loss; not stored again", "err", err, "event", string(p))
			continue
		}
		evs = append(evs, ev)
	}
	stored, spooled := 0, 0
	for len(evs) > 0 {
		batch := evs[:min(len(evs), 500)]
		evs = evs[len(batch):]
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.cfg.Redeliver(rctx, batch)
		cancel()
		if err == nil {
			stored += len(batch)
			continue
		}
		for _, ev := range batch {
			if s.cfg.Spool == nil || s.cfg.Spool.Write(ev) != nil {
				s.log.Error("usage event NOT stored again after Redis changed identity", "request_id", ev.RequestID, "err", err)
				continue
			}
			spooled++
		}
	}
	s.metrics.redelivered.Add(float64(stored + spooled))
	s.log.Warn("Redis changed identity (restart or failover): the usage events it acknowledged in its last seconds were stored again in PostgreSQL (idempotent: those it kept are billed once)",
		"stored", stored, "spooled", spooled)
}

// infoRefused reports a Redis that answers but will not run INFO for this client (the
// command renamed away, or not in its ACL), as some managed services configure it; other
// errors (loading, busy, unreachable) pass.
func infoRefused(err error) bool {
	var re redis.Error
	if errors.Is(err, redisinfo.ErrNoRunID) {
		return true
	}
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "NOPERM") || strings.Contains(msg, "unknown command")
}
