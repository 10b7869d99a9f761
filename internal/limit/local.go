package limit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Serving without Redis (REDIS_OUTAGE=serve).
//
// By default a proxy that cannot reach Redis refuses every request with a 503: the
// limits, the balance snapshot and the usage stream all live there, and admitting with
// none of them would be a silent unlimited mode. An operator who prefers to keep serving
// through a Redis outage opts in with REDIS_OUTAGE=serve. Each proxy then admits from
// what it can still check:
//
//   - the balance, read from the ledger (PostgreSQL) for every request: a used-up
//     wallet is refused as usual;
//   - the spending caps, summed from the usage events for every request that has one;
//   - concurrency (user, key, account) and the key's requests per minute, counted in
//     this process only: with N proxies a limit of L admits up to N×L, and a full limit
//     refuses at once instead of waiting;
//   - accounts chosen by priority and this process's load; an account a failure took out
//     of rotation stays out for this process (Block); sticky sessions are not kept.
//
// Completions of such admissions bill through the relay's PostgreSQL fallback (each
// request's event and debit in one transaction), so nothing served goes unbilled. A
// wallet can go below zero by what its requests in flight cost, as with Redis, and by a
// little more when several proxies admit the same user's requests at once. With
// PostgreSQL down as well, nothing can be checked and requests get the 503.
//
// The first request to meet the failure pays it (a hung Redis: one read timeout); from
// then on requests do not touch Redis, and a background probe every localProbeEvery
// returns admission to the shared limits within that of Redis answering.

// ErrLocal is what Complete returns for a lease admitted without Redis: nothing was
// billed in Redis, and the caller records the usage in PostgreSQL. It wraps
// ErrUnavailable.
var ErrLocal = fmt.Errorf("%w: admitted without Redis", ErrUnavailable)

// RedisOutage values (Options.RedisOutage).
const (
	OutageRefuse = "refuse"
	OutageServe  = "serve"
)

// local is this process's own count of what it admitted without Redis.
type local struct {
	mu       sync.Mutex
	inflight map[localScope]int32
	rpm      map[int64]localWindow // per key
	blocked  map[int64]time.Time   // per account: out of rotation until (Block)
	admitted atomic.Int64          // admissions made without Redis
	serving  atomic.Bool           // admitting without Redis until probeRedis finds it back
}

func (l *local) init() {
	l.inflight, l.rpm, l.blocked = map[localScope]int32{}, map[int64]localWindow{}, map[int64]time.Time{}
}

// localProbeEvery is how often a proxy admitting without Redis looks whether it answers
// again, in the background: requests meanwhile do not touch Redis at all, so a hung one
// costs none of them its read timeout.
const localProbeEvery = 100 * time.Millisecond

type localScope struct {
	kind byte // 'u' user, 'k' key, 'a' account
	id   int64
}

type localWindow struct {
	minute int64 // Unix minute
	n      int32
}

// AdmittedWithoutRedis counts the admissions made without Redis since the start.
func (g *Gate) AdmittedWithoutRedis() int64 { return g.local.admitted.Load() }

// Local reports whether the lease was admitted without Redis.
func (l Lease) Local() bool { return l.local }

// serveWithoutRedis decides whether a failed admission goes local.
func (g *Gate) serveWithoutRedis(ctx context.Context, err error) bool {
	return g.opts.RedisOutage == OutageServe && errors.Is(err, ErrUnavailable) && ctx.Err() == nil
}

// serveLocally switches admission to this process's own counts after Redis failed err,
// and starts probeRedis; once per outage.
func (g *Gate) serveLocally(err error) {
	if g.local.serving.Swap(true) {
		return
	}
	if g.log != nil {
		g.log.Warn("Redis unavailable: admitting without it (REDIS_OUTAGE=serve); limits are counted per proxy, usage is billed in PostgreSQL", "err", err)
	}
	go g.probeRedis()
}

// probeRedis looks every localProbeEvery whether Redis answers again. Once it does, the
// counters of the usage stored meanwhile are reset (ResetCounters) before admission goes
// back to Redis, so that no admission there counts on them.
func (g *Gate) probeRedis() {
	for {
		time.Sleep(localProbeEvery)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := g.rdb.Ping(ctx).Err()
		if err == nil {
			err = g.ResetCounters(ctx)
		}
		cancel()
		if errors.Is(err, redis.ErrClosed) {
			return // the process is closing its client
		}
		if err == nil {
			g.local.serving.Store(false)
			if g.log != nil {
				g.log.Info("Redis answers again: admitting with the shared limits")
			}
			return
		}
	}
}

// admitLocally admits req from the ledger and this process's counts.
func (g *Gate) admitLocally(ctx context.Context, req Request) (Lease, error) {
	start := time.Now()
	unavailable := func(what string, err error) error {
		return fmt.Errorf("%w: Redis is down and %s failed: %v", ErrUnavailable, what, err)
	}
	bal, err := g.loadBalance(ctx, req.UserID)
	if err != nil {
		return Lease{}, unavailable("reading the balance", err)
	}
	if bal <= 0 {
		return Lease{}, balanceRefusal()
	}
	now := time.Now().UTC()
	for which, limit := range [...]int64{req.KeyDailyCap, req.KeyMonthlyCap, req.UserDailyCap} {
		if limit <= 0 {
			continue
		}
		keyID, since := spendScope(req, which+1, now)
		spent, err := g.loadSpend(ctx, req.UserID, keyID, since)
		if err != nil {
			return Lease{}, unavailable("reading the spend", err)
		}
		if spent >= limit {
			return Lease{}, capRefusal(which+1, req, now)
		}
	}

	l := &g.local
	l.mu.Lock()
	defer l.mu.Unlock()
	minute := now.Unix() / 60
	w := l.rpm[req.KeyID]
	if w.minute != minute {
		w = localWindow{minute: minute}
	}
	if req.KeyRPM > 0 && w.n >= req.KeyRPM {
		return Lease{}, rpmRefusal(req, time.Duration(60-now.Unix()%60)*time.Second)
	}
	if req.UserConcurrency > 0 && l.inflight[localScope{'u', req.UserID}] >= req.UserConcurrency {
		return Lease{}, g.fullRefusal(2, req, 0)
	}
	if req.KeyConcurrency > 0 && l.inflight[localScope{'k', req.KeyID}] >= req.KeyConcurrency {
		return Lease{}, g.fullRefusal(3, req, 0)
	}
	acc, err := l.choose(req.Candidates, now)
	if err != nil {
		return Lease{}, g.localRefusal(err, req)
	}
	if req.KeyRPM > 0 {
		w.n++
		l.rpm[req.KeyID] = w
	}
	lease := Lease{RequestID: req.RequestID, UserID: req.UserID, KeyID: req.KeyID, AccountID: acc,
		Waited: time.Since(start), sets: heldSets(req), local: true}
	l.take(lease, 1)
	l.admitted.Add(1)
	return lease, nil
}

// failoverLocally moves a lease admitted without Redis to another candidate.
func (g *Gate) failoverLocally(lease *Lease, req Request) error {
	l := &g.local
	l.mu.Lock()
	defer l.mu.Unlock()
	l.add(localScope{'a', lease.AccountID}, -1)
	acc, err := l.choose(req.Candidates, time.Now())
	if err != nil {
		lease.AccountID = 0
		return g.localRefusal(err, req)
	}
	lease.AccountID = acc
	l.add(localScope{'a', acc}, 1)
	return nil
}

// completeLocally releases what admitLocally took.
func (g *Gate) completeLocally(lease Lease) error {
	l := &g.local
	l.mu.Lock()
	l.take(lease, -1)
	l.mu.Unlock()
	return ErrLocal
}

// take adds d to the counts the lease holds; a count back at zero is dropped, so the
// maps hold only what is in flight.
func (l *local) take(lease Lease, d int32) {
	if lease.AccountID != 0 { // 0: a failover found no account
		l.add(localScope{'a', lease.AccountID}, d)
	}
	if lease.holdsUser() {
		l.add(localScope{'u', lease.UserID}, d)
	}
	if lease.holdsKey() {
		l.add(localScope{'k', lease.KeyID}, d)
	}
}

// add adds d to a scope's count (the caller holds l.mu).
func (l *local) add(s localScope, d int32) {
	if n := l.inflight[s] + d; n > 0 {
		l.inflight[s] = n
	} else {
		delete(l.inflight, s)
	}
}

// errAllFull: every usable candidate is at its concurrency limit in this process.
var errAllFull = errors.New("every usable account is full")

// choose picks the candidate admit.lua would: out of rotation ones skipped, then the
// lowest priority number, then the lowest load per unit of weight (here this process's
// load), ties broken at random. The caller holds l.mu.
func (l *local) choose(cands []Candidate, now time.Time) (int64, error) {
	n := len(cands)
	rot := rand.IntN(max(n, 1))
	best, usable := -1, false
	var bestPrio int32
	var bestLoad float64
	for j := range n {
		c := cands[(j+rot)%n]
		if until, ok := l.blocked[c.ID]; ok {
			if until.After(now) {
				continue
			}
			delete(l.blocked, c.ID)
		}
		usable = true
		used := l.inflight[localScope{'a', c.ID}]
		if c.MaxConcurrency > 0 && used >= c.MaxConcurrency {
			continue
		}
		load := float64(used) / float64(max(c.Weight, 1))
		if best < 0 || c.Priority < bestPrio || (c.Priority == bestPrio && load < bestLoad) {
			best, bestPrio, bestLoad = (j+rot)%n, c.Priority, load
		}
	}
	switch {
	case best >= 0:
		return cands[best].ID, nil
	case usable:
		return 0, errAllFull
	default:
		return 0, ErrNoAccount
	}
}

func (g *Gate) localRefusal(err error, req Request) error {
	if errors.Is(err, errAllFull) {
		return g.fullRefusal(5, req, 0)
	}
	return err
}

// block keeps an account out of this process's local choices until the given time.
func (l *local) block(accountID int64, until time.Time) {
	l.mu.Lock()
	l.blocked[accountID] = until
	l.mu.Unlock()
}
