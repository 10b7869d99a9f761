// Package limit admits requests and completes them in Redis, one script call each.
// Admission checks the balance snapshot and the key's RPM, takes concurrency leases for
// the user, the key and an upstream account it chooses among the candidates (sticky
// binding first, then priority tier, then least loaded by weight), and binds the
// session. Completion releases the leases, appends the usage event to the durable
// stream and debits the balance snapshot, atomically.
package limit

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

var (
	//go:embed admit.lua
	admitLua string
	//go:embed complete.lua
	completeLua string
	//go:embed checkpoint.lua
	checkpointLua string
	//go:embed release.lua
	releaseLua string
	//go:embed prime.lua
	primeLua string

	admitScript      = newScript(admitLua)
	completeScript   = newScript(completeLua)
	checkpointScript = newScript(checkpointLua)
	releaseScript    = newScript(releaseLua)
	// Not on the request path (a counter miss); run with go-redis's EVALSHA-then-EVAL.
	primeScript = redis.NewScript(primeLua)
)

// script is a Lua script with its SHA boxed once for the EVALSHA argument lists.
type script struct {
	*redis.Script
	sha any
	src string
}

func newScript(src string) *script {
	s := redis.NewScript(src)
	return &script{Script: s, sha: s.Hash(), src: src}
}

// evalArgs starts the EVALSHA argument list of a call of s with nkeys keys, with room
// for n more arguments after them.
func evalArgs(s *script, nkeys, n int) []any {
	a := make([]any, 0, 3+nkeys+n)
	return append(a, "evalsha", s.sha, nkeys)
}

// BalanceLoader reads a user's balance from the ledger (PostgreSQL) on a snapshot miss.
type BalanceLoader func(ctx context.Context, userID int64) (int64, error)

// SpendLoader sums what a key (or a user, when keyID is 0) was billed since a time, from
// the recorded usage events, to load a missing spend counter.
type SpendLoader func(ctx context.Context, userID, keyID int64, since time.Time) (int64, error)

// Options tune a Gate.
type Options struct {
	LeaseTTL    time.Duration `env:"LEASE_TTL" envDefault:"60s"`            // a lease not renewed expires after this
	MaxWait     time.Duration `env:"ADMISSION_MAX_WAIT" envDefault:"20s"`   // longest a request waits for a free slot
	StickyTTL   time.Duration `env:"STICKY_TTL" envDefault:"1h"`            // sliding session binding
	SnapshotTTL time.Duration `env:"BALANCE_SNAPSHOT_TTL" envDefault:"15m"` // balance snapshot lifetime before re-reading the ledger
	// Pipelines bounds the admission and completion pipelines in flight to Redis at
	// once; calls arriving while all are busy leave together in the next (batch.go).
	Pipelines int `env:"REDIS_PIPELINES" envDefault:"4"`
	// ReserveIdle is how long an admission reserved for the next request of a busy
	// run waits for it before it is released (reserve.go); negative: no reservations.
	ReserveIdle time.Duration `env:"ADMISSION_RESERVE_IDLE" envDefault:"2s"`
	// RedisOutage is what admission does while Redis fails: "refuse" (a 503 for every
	// request) or "serve" (admit from the ledger and this process's counts; local.go).
	RedisOutage string `env:"REDIS_OUTAGE" envDefault:"refuse"`
}

// Gate is the Redis side of the hot path.
type Gate struct {
	rdb         redis.UniversalClient
	prefix      string
	loadBalance BalanceLoader
	loadSpend   SpendLoader
	opts        Options
	sf          singleflight.Group
	waiters     *waiters
	batch       *batcher
	tracked     tracked
	local       local // admissions without Redis (local.go)
	reserved    reservations
	stale       staleCounters // reset.go
	log         *slog.Logger

	users, keys, accounts nameCache // key names per id (names.go)
	c                     constNames
}

// constNames are the key names and arguments the script calls share, boxed once.
type constNames struct {
	stickyNone, releaseNone, sweptNone     any // placeholders for "no such key"
	rpmNone                                any
	releaseChannel, journal, journalEvents any
	maxWaitMs                              any
	stream                                 boxedString
}

// NewGate returns a gate on rdb with keys under prefix. Call Run to receive wake-ups.
func NewGate(rdb redis.UniversalClient, prefix string, loadBalance BalanceLoader, loadSpend SpendLoader, opts Options) *Gate {
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = 60 * time.Second
	}
	if opts.MaxWait == 0 {
		opts.MaxWait = 20 * time.Second
	}
	if opts.StickyTTL == 0 {
		opts.StickyTTL = time.Hour
	}
	if opts.SnapshotTTL == 0 {
		opts.SnapshotTTL = 15 * time.Minute
	}
	if opts.Pipelines == 0 {
		opts.Pipelines = 4
	}
	if opts.ReserveIdle == 0 {
		opts.ReserveIdle = 2 * time.Second
	}
	// A reservation is a lease nobody renews: it must be taken or released well within
	// the lease TTL.
	opts.ReserveIdle = min(opts.ReserveIdle, opts.LeaseTTL/4)
	g := &Gate{rdb: rdb, prefix: prefix, loadBalance: loadBalance, loadSpend: loadSpend, opts: opts,
		waiters: newWaiters(), batch: newBatcher(rdb, opts.Pipelines),
		users: nameCache{prefix: prefix, kind: "u"}, keys: nameCache{prefix: prefix, kind: "k"},
		accounts: nameCache{prefix: prefix, kind: "a"}}
	g.c.stickyNone, g.c.releaseNone, g.c.sweptNone = prefix+"sticky:-", prefix+"conc:a:-", prefix+"swept:-"
	g.c.rpmNone = prefix + "rpm:-"
	g.reserved.seed = maphash.MakeSeed()
	g.local.init()
	g.batch.lost = func() { g.reserved.expireWhere(nil) } // Redis may have lost their leases
	g.c.releaseChannel, g.c.journal, g.c.journalEvents = g.releaseChannel(), g.journalKey(), g.journalEventsKey()
	g.c.maxWaitMs = (opts.MaxWait + time.Second).Milliseconds()
	return g
}

// Options returns the effective options.
func (g *Gate) Options() Options { return g.opts }

// Candidate is an account the request may go to.
type Candidate struct {
	ID             int64
	Priority       int32
	Weight         int32
	MaxConcurrency int32
}

// Request asks for admission.
type Request struct {
	RequestID       string
	UserID, KeyID   int64
	UserConcurrency int32 // 0: unlimited
	KeyConcurrency  int32
	KeyRPM          int32
	Session         string // sticky-session key, already namespaced by API key; "" for none
	Candidates      []Candidate
	// Spending caps in nano-USD; 0: none. Days and months are UTC.
	KeyDailyCap, KeyMonthlyCap, UserDailyCap int64
}

// Lease is an admitted request's hold on its slots; Complete releases it.
type Lease struct {
	RequestID string
	UserID    int64
	KeyID     int64
	AccountID int64
	Waited    time.Duration
	// Journaled: a checkpoint of the request's usage is in the journal (Checkpoint).
	Journaled bool
	// Orphan: the completion is an orphan sweep's, billing the checkpoint (Orphans).
	Orphan bool
	// Reserved: the admission was reserved ahead of the request (reserve.go); its
	// RequestID is the reservation's, which the request takes for its own.
	Reserved bool
	// Again asks Complete to reserve an admission for the next request of this one's
	// shape, if its run is busy (reserve.go). The relay sets it after a clean answer.
	Again bool
	shape *shape
	// sets records which of the user's and the key's lease sets admission wrote, so that
	// completion and renewal leave the others alone, and whether the key has a spending
	// cap. Zero (a lease rebuilt from the journal) means all of them.
	sets uint8
	// local: admitted without Redis (local.go); held in this process's counts only.
	local bool
}

const (
	setsKnown uint8 = 1 << iota
	setUser
	setKey
	setKeyCapped // not a lease set: the key has a spending cap
)

// heldSets: admission takes a user or key lease only where that scope has a limit.
func heldSets(req Request) uint8 {
	s := setsKnown
	if req.UserConcurrency > 0 {
		s |= setUser
	}
	if req.KeyConcurrency > 0 {
		s |= setKey
	}
	if req.KeyDailyCap > 0 || req.KeyMonthlyCap > 0 {
		s |= setKeyCapped
	}
	return s
}

// holdsUser and holdsKey report whether the lease may sit in the user's or the key's set;
// keyCapped, whether the key has a spending cap (its completion then counts the debit in
// the key's pending sum, KeyPendingKey). Unknown (a lease rebuilt from the journal): yes.
func (l Lease) holdsUser() bool { return l.sets&setsKnown == 0 || l.sets&setUser != 0 }
func (l Lease) holdsKey() bool  { return l.sets&setsKnown == 0 || l.sets&setKey != 0 }
func (l Lease) keyCapped() bool { return l.sets&setsKnown == 0 || l.sets&setKeyCapped != 0 }

// Refusal is a request refused by a limit; the relay renders it in the protocol's shape.
type Refusal struct {
	Status     int
	Type       string // Tollgate's own error type
	Message    string
	RetryAfter time.Duration
}

func (r *Refusal) Error() string { return r.Message }

// ErrNoAccount means no candidate account is usable (all cooling, limited or in error).
var ErrNoAccount = errors.New("no upstream account is usable now")

// ErrUnavailable wraps Redis failures: the relay answers 503 rather than admitting
// requests with no limits (there is no silent unlimited mode).
var ErrUnavailable = errors.New("limits store unavailable")

// Key names. Everything lives under the deployment's prefix; the per-id ones come from
// the name caches (names.go), which the hot path uses boxed.
func (g *Gate) balanceKey(user int64) string   { return g.users.get(user).own.(string) }
func (g *Gate) userLeases(user int64) string   { return g.users.get(user).leases.(string) }
func (g *Gate) keyLeases(key int64) string     { return g.keys.get(key).leases.(string) }
func (g *Gate) accountLeases(acc int64) string { return g.accounts.get(acc).leases.(string) }

// AccountStateKey holds the time (ms) until which an account is out of rotation.
func (g *Gate) AccountStateKey(acc int64) string { return g.accounts.get(acc).own.(string) }
func (g *Gate) stickyKey(session string) string  { return g.prefix + "sticky:" + session }
func (g *Gate) releaseChannel() string           { return g.prefix + "released" }
func (g *Gate) journalKey() string               { return g.prefix + "journal" }
func (g *Gate) journalEventsKey() string         { return g.prefix + "journal:ev" }

// spendKeys are the spend counters of a request at time now: the key's today and this
// month, the user's today (UTC).
func (g *Gate) spendKeys(userID, keyID int64, now time.Time) [3]string {
	ks := g.keys.spendNames(g.keys.get(keyID), keyID, now)
	us := g.users.spendNames(g.users.get(userID), userID, now)
	return [3]string{ks.daily.(string), ks.month.(string), us.daily.(string)}
}

// formatDay returns now's UTC day and month as "20060102" and "200601", formatted once
// a day rather than twice per request.
func formatDay(now time.Time) *formattedDay {
	n := now.Unix()
	d := n / 86400
	if n < 0 && n%86400 != 0 {
		d--
	}
	if c := dayCache.Load(); c != nil && c.day == d {
		return c
	}
	u := now.UTC()
	c := &formattedDay{day: d, d: u.Format("20060102"), m: u.Format("200601")}
	dayCache.Store(c)
	return c
}

type formattedDay struct {
	day  int64
	d, m string
}

var dayCache atomic.Pointer[formattedDay]

// BalanceKey is the Redis key of a user's balance snapshot in nano-USD.
func (g *Gate) BalanceKey(userID int64) string { return g.balanceKey(userID) }

// Admit admits the request or explains why not. When a concurrency limit is full it
// waits, woken by releases, up to MaxWait.
//
// A request whose admission was reserved ahead (reserve.go) gets it at once, without a
// round trip; the lease then carries the reservation's request id.
//
// With REDIS_OUTAGE=serve, a request Redis cannot admit is admitted without it
// (local.go).
func (g *Gate) Admit(ctx context.Context, req Request) (Lease, error) {
	if g.local.serving.Load() {
		return g.admitLocally(ctx, req) // until probeRedis finds Redis back
	}
	l, err := g.admit(ctx, req)
	if err != nil && g.serveWithoutRedis(ctx, err) {
		g.serveLocally(err)
		return g.admitLocally(ctx, req)
	}
	return l, err
}

func (g *Gate) admit(ctx context.Context, req Request) (Lease, error) {
	start := time.Now()
	var sh *shape
	if g.reserving() {
		var l Lease
		var ok bool
		if sh, l, ok = g.reserved.take(&req, start, g.opts.ReserveIdle); ok {
			return l, nil
		}
	}
	deadline := start.Add(g.opts.MaxWait)
	primes, reclaimed := 0, false
	for {
		code, val, err := g.run(ctx, req, 0, false)
		if err != nil {
			return Lease{}, err
		}
		if code >= 2 && code <= 5 && !reclaimed {
			// A limit is full: this process's own reservations on it go first (reserve.go).
			reclaimed = true
			if g.reclaim(ctx, code, &req) {
				continue
			}
		}
		var scopes []string
		switch code {
		case 1:
			if sh != nil {
				g.reserved.admitted(sh)
			}
			return Lease{RequestID: req.RequestID, UserID: req.UserID, KeyID: req.KeyID, AccountID: val, Waited: time.Since(start),
				sets: heldSets(req), shape: sh}, nil
		case -1:
			// A snapshot loaded can be dropped again before this admission runs (usage
			// stored, a top-up): load it again, a few times.
			if primes == 3 {
				return Lease{}, fmt.Errorf("%w: balance snapshot did not settle", ErrUnavailable)
			}
			if err := g.primeBalance(ctx, req.UserID); err != nil {
				return Lease{}, err
			}
			primes++
			continue
		case 0:
			return Lease{}, balanceRefusal()
		case 4:
			return Lease{}, rpmRefusal(req, time.Duration(val)*time.Millisecond)
		case 6:
			return Lease{}, ErrNoAccount
		case -2:
			if err := g.primeSpend(ctx, req, int(val)); err != nil {
				return Lease{}, err
			}
			continue
		case 7:
			return Lease{}, capRefusal(int(val), req, time.Now())
		case 2:
			scopes = []string{"u:" + strconv.FormatInt(req.UserID, 10)}
		case 3:
			scopes = []string{"k:" + strconv.FormatInt(req.KeyID, 10)}
		case 5:
			for _, c := range req.Candidates {
				scopes = append(scopes, "a:"+strconv.FormatInt(c.ID, 10))
			}
		}
		if !time.Now().Before(deadline) {
			return Lease{}, g.fullRefusal(code, req, g.opts.MaxWait)
		}
		if err := g.waiters.wait(ctx, scopes, deadline); err != nil {
			return Lease{}, err
		}
	}
}

func balanceRefusal() *Refusal {
	return &Refusal{Status: 402, Type: "tollgate_insufficient_balance",
		Message: "Tollgate: your balance is used up; top up your wallet to continue"}
}

func rpmRefusal(req Request, retryAfter time.Duration) *Refusal {
	return &Refusal{Status: 429, Type: "tollgate_rate_limit", RetryAfter: retryAfter,
		Message: fmt.Sprintf("Tollgate: this API key's limit of %d requests per minute is reached", req.KeyRPM)}
}

func capRefusal(which int, req Request, now time.Time) *Refusal {
	now = now.UTC()
	tomorrow := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	what, cap, resets := "this API key's daily spending cap", req.KeyDailyCap, tomorrow
	switch which {
	case 2:
		what, cap = "this API key's monthly spending cap", req.KeyMonthlyCap
		resets = time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	case 3:
		what, cap = "your account's daily spending cap", req.UserDailyCap
	}
	return &Refusal{Status: 429, Type: "tollgate_spend_cap", RetryAfter: resets.Sub(now),
		Message: fmt.Sprintf("Tollgate: %s of %s is reached; it resets at %s", what, formatUSD(cap), resets.Format("2006-01-02 15:04 UTC"))}
}

func formatUSD(nano int64) string {
	return fmt.Sprintf("$%d.%02d", nano/1_000_000_000, (nano%1_000_000_000)/10_000_000)
}

// primeSpend loads a missing spend counter from the usage events (single-flight).
func (g *Gate) primeSpend(ctx context.Context, req Request, which int) error {
	now := time.Now().UTC()
	keys := g.spendKeys(req.UserID, req.KeyID, now)
	key := keys[which-1]
	_, err, _ := g.sf.Do(key, func() (any, error) {
		keyID, since := spendScope(req, which, now)
		ttl := 48 * time.Hour
		if which == 2 {
			ttl = 32 * 24 * time.Hour
		}
		// The usage events do not hold the debits waiting in the stream: the user's
		// pending sum for the user's counter, the key's (a capped key's completions count
		// in it) for the key's.
		pending := pendingUse{sum: g.users.get(req.UserID).pend.(string), from: since}
		if keyID != 0 {
			pending.sum = g.keys.get(keyID).pend.(string)
		}
		return nil, g.prime(ctx, req.UserID, key, ttl, pending, func() (int64, error) {
			spent, err := g.loadSpend(ctx, req.UserID, keyID, since)
			if err != nil {
				return 0, fmt.Errorf("load spend: %w", err)
			}
			return spent, nil
		})
	})
	return err
}

// spendScope is what a spend counter sums (which: 1 key daily, 2 key monthly, 3 user
// daily): the key (0 for the user's) and since when (UTC).
func spendScope(req Request, which int, now time.Time) (keyID int64, since time.Time) {
	switch which {
	case 2:
		return req.KeyID, time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	case 3:
		return 0, time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	}
	return req.KeyID, time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
}

// fullRefusal refuses a request whose limit stayed full for waited (0: refused at once).
func (g *Gate) fullRefusal(code int64, req Request, waited time.Duration) *Refusal {
	msg := "Tollgate: every upstream account for this model is at its concurrency limit"
	switch code {
	case 2:
		msg = fmt.Sprintf("Tollgate: your account's concurrency limit of %d requests is reached", req.UserConcurrency)
	case 3:
		msg = fmt.Sprintf("Tollgate: this API key's concurrency limit of %d requests is reached", req.KeyConcurrency)
	}
	if waited > 0 {
		msg += fmt.Sprintf(" (waited %s)", waited)
	}
	return &Refusal{Status: 429, Type: "tollgate_concurrency_limit", Message: msg, RetryAfter: time.Second}
}

// Failover moves an admitted request to another account: it releases the lease on the
// failed one and chooses among the remaining candidates, in one call. It does not wait.
func (g *Gate) Failover(ctx context.Context, lease *Lease, req Request) error {
	if lease.local {
		return g.failoverLocally(lease, req)
	}
	code, val, err := g.run(ctx, req, lease.AccountID, true)
	if err != nil {
		return err
	}
	switch code {
	case 1:
		lease.AccountID = val
		return nil
	case 5:
		lease.AccountID = 0
		return g.fullRefusal(5, req, 0)
	default:
		lease.AccountID = 0
		return ErrNoAccount
	}
}

func (g *Gate) run(ctx context.Context, req Request, releaseAccount int64, failover bool) (code, val int64, err error) {
	res, err := g.batch.run(admitScript, g.admitArgs(req, releaseAccount, failover, false, time.Now())).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return res[0], res[1], nil
}

// admitArgs is the EVALSHA command of an admission (admit.lua).
func (g *Gate) admitArgs(req Request, releaseAccount int64, failover, reserve bool, now time.Time) []any {
	u, k := g.users.get(req.UserID), g.keys.get(req.KeyID)
	var sticky any = g.c.stickyNone
	stickyTTL := 0
	if req.Session != "" {
		sticky = g.stickyKey(req.Session)
		stickyTTL = int(g.opts.StickyTTL.Seconds())
	}
	var release any = g.c.releaseNone
	if releaseAccount != 0 {
		release = g.accounts.get(releaseAccount).leases
	}
	ks, us := g.keys.spendNames(k, req.KeyID, now), g.users.spendNames(u, req.UserID, now)
	fo := "0"
	if failover {
		fo = "1"
	}
	nc := len(req.Candidates)
	a := evalArgs(admitScript, 11+3*nc, 16+4*nc)
	a = append(a, u.own, g.keys.rpmName(k, req.KeyID, now), u.leases, k.leases, sticky, release,
		ks.daily, ks.month, us.daily, u.waiting, k.waiting)
	for _, c := range req.Candidates {
		n := g.accounts.get(c.ID)
		a = append(a, n.leases, n.own, n.waiting)
	}
	// Limits go as non-negative decimals: the script tells "none" by the string "0".
	a = append(a, now.UnixMilli(), now.Add(g.opts.LeaseTTL).UnixMilli(), req.RequestID,
		max(req.UserConcurrency, 0), max(req.KeyConcurrency, 0), max(req.KeyRPM, 0), stickyTTL, fo, rand.IntN(1<<20), nc,
		max(req.KeyDailyCap, 0), max(req.KeyMonthlyCap, 0), max(req.UserDailyCap, 0), g.c.maxWaitMs, purgeFlag(), flag(reserve))
	for _, c := range req.Candidates {
		a = append(a, c.ID, c.Priority, max(c.Weight, 1), max(c.MaxConcurrency, 0))
	}
	return a
}

// purgeFlag asks about one admission in 64 to purge expired leases from the sets it
// does not count (admit.lua); the others leave them, as they cost nothing but memory
// and only a dead process leaves any.
func purgeFlag() int {
	if rand.IntN(64) == 0 {
		return 1
	}
	return 0
}

// primeBalance loads a missing balance snapshot: the ledger's balance less the debits
// still waiting in the usage stream (PendingKey), which the ledger does not hold yet.
//
// The pending sum is read before the ledger, and again by the script that sets the
// snapshot (prime.lua), which subtracts the larger of the two: a worker that stores a
// batch in between takes its debits off the sum only after they are in the ledger (the
// first read has them), and a completion in between adds its debit to the sum, not to
// the snapshot it finds missing (the second read has it). The snapshot so errs, if at
// all, low, by a batch both the ledger and the first read hold.
func (g *Gate) primeBalance(ctx context.Context, userID int64) error {
	_, err, _ := g.sf.Do(strconv.FormatInt(userID, 10), func() (any, error) {
		return nil, g.prime(ctx, userID, g.balanceKey(userID), g.opts.SnapshotTTL, pendingUse{sum: g.users.get(userID).pend.(string)}, func() (int64, error) {
			bal, err := g.loadBalance(ctx, userID)
			if err != nil {
				return 0, fmt.Errorf("load balance of user %d: %w", userID, err)
			}
			return bal, nil
		})
	})
	return err
}

// prime sets a missing counter of the user's — a balance snapshot (primeBalance) or a
// spend counter (primeSpend) — to what load reads from PostgreSQL, for ttl, accounting
// for the debits still waiting in the usage stream as pending says; a counter someone
// else set meanwhile (and maybe already moved) wins.
//
// A counter is dropped (Drop) when usage was stored without its completion, or the
// balance changed outside usage: a load that read PostgreSQL before that change, and set
// its counter after the drop, would keep counting without it until the counter expires.
// So the user's generation, which every drop bumps in whichever process, is read before
// the load, and the counter is set only if it has not moved since; else the load runs
// again. The third try sets what it read regardless, so that admission always ends.
func (g *Gate) prime(ctx context.Context, userID int64, key string, ttl time.Duration, pending pendingUse, load func() (int64, error)) error {
	u := g.users.get(userID)
	keys := []string{key, u.gen.(string)}
	if pending.sum != "" {
		keys = append(keys, pending.sum)
		if !pending.from.IsZero() {
			keys = append(keys, UsageStream(g.prefix))
		}
	}
	reads := keys[1:min(3, len(keys))] // the generation and the pending sum, if any
	for attempt := 1; ; attempt++ {
		before, err := g.rdb.MGet(ctx, reads...).Result()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		gen, _ := before[0].(string)
		if attempt == 3 {
			gen = "*"
		}
		v, err := load()
		if err != nil {
			return err
		}
		args := []any{v, ttl.Milliseconds(), gen}
		if pending.sum != "" {
			sum, _ := before[1].(string)
			args = append(args, cmp.Or(sum, "0"))
			if !pending.from.IsZero() {
				args = append(args, pending.from.UnixMilli())
			}
		}
		n, err := primeScript.Run(ctx, g.rdb, keys, args...).Int()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		if n != 2 {
			return nil
		}
	}
}

// pendingUse says how a counter being primed accounts for the debits waiting in the
// usage stream (prime.lua): a balance snapshot subtracts its user's pending sum; a spend
// counter adds its own (the key's, or the user's for the user's daily counter) when the
// stream holds nothing from before the counter's period.
type pendingUse struct {
	sum  string    // the pending sum's key; "": none
	from time.Time // spend counters: the start of their day or month; zero: subtract
}

// drop runs Drop on keys in a transaction of its own.
func (g *Gate) drop(ctx context.Context, keys ...string) error {
	_, err := g.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		Drop(ctx, p, g.prefix, keys...)
		return nil
	})
	return err
}

// ErrSwept: the other side billed the request — an orphan sweep billed the checkpoint
// before its own proxy completed it, or (for a sweep) the proxy completed it first. This
// completion released the leases and billed nothing.
var ErrSwept = errors.New("request already billed from its checkpoint by an orphan sweep")

// Complete releases the lease and, when the attempt consumed tokens, appends its usage
// event (JSON) to the stream and debits the balance snapshot — one atomic call.
//
// A lease admitted without Redis is released here and ErrLocal returned: the caller
// records the usage in PostgreSQL.
func (g *Gate) Complete(ctx context.Context, l Lease, stream string, event []byte, billedNano int64) error {
	if l.local {
		return g.completeLocally(l)
	}
	now := time.Now()
	u, k, acc := g.users.get(l.UserID), g.keys.get(l.KeyID), g.accounts.get(l.AccountID)
	ks, us := g.keys.spendNames(k, l.KeyID, now), g.users.spendNames(u, l.UserID, now)
	var mark any = g.c.sweptNone
	mode := "0"
	switch {
	case l.Orphan:
		mode, mark = "2", g.prefix+"swept:"+l.RequestID
	case l.Journaled:
		mode, mark = "1", g.prefix+"swept:"+l.RequestID
	}
	a := evalArgs(completeScript, 17, 9)
	a = append(a, g.c.stream.box(stream), u.own, u.leases, k.leases, acc.leases,
		g.c.releaseChannel, ks.daily, ks.month, us.daily, u.waiting, k.waiting, acc.waiting,
		g.c.journal, g.c.journalEvents, mark, u.pend, k.pend,
		event, billedNano, l.RequestID, u.scope+" "+k.scope+" "+acc.scope, mode, now.UnixMilli(),
		flag(l.holdsUser()), flag(l.holdsKey()), flag(l.keyCapped()))
	c := &scriptCall{script: completeScript, args: a}
	var next Request
	if l.shape != nil && g.reserving() {
		// The next request of a busy run is admitted in the same pipeline, after this
		// one's debit (reserve.go).
		c.then, next = g.reservation(l.shape, now, l.Again)
	}
	g.batch.do(c)
	if c.then != nil {
		g.kept(ctx, l.shape, next, c, c.then, now)
	}
	res, err := c.cmd.Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	switch res {
	case 2:
		return ErrSwept
	case 3:
		return ErrAlive
	}
	return nil
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// ErrAlive: a sweep's completion found the request's lease renewed since Orphans read
// it — its proxy is alive and will complete it. Nothing was changed.
var ErrAlive = errors.New("the request's proxy renewed its lease: not an orphan")

// Forget drops a request's journal entry without billing it (an unreadable checkpoint,
// logged by the caller for billing by hand).
func (g *Gate) Forget(ctx context.Context, requestID string) error {
	pipe := g.rdb.TxPipeline()
	pipe.ZRem(ctx, g.journalKey(), requestID)
	pipe.HDel(ctx, g.journalEventsKey(), requestID)
	_, err := pipe.Exec(ctx)
	return err
}

// Checkpoint keeps event — the request's usage event as far as its stream has reported
// usage — in the journal while the lease lives. If the proxy serving the request dies,
// its lease stops being renewed and Orphans hands the checkpoint to another proxy,
// which bills it with Complete. It reports whether the checkpoint was kept (false when
// the lease is already gone).
//
// A lease admitted without Redis has no lease in Redis to keep a checkpoint beside: it
// returns (false, nil), and the proxy's own journal keeps the checkpoint.
func (g *Gate) Checkpoint(ctx context.Context, l Lease, event []byte) (bool, error) {
	if l.local {
		return false, nil
	}
	a := evalArgs(checkpointScript, 3, 3)
	a = append(a, g.accounts.get(l.AccountID).leases, g.c.journal, g.c.journalEvents,
		l.RequestID, time.Now().Add(g.opts.LeaseTTL).UnixMilli(), event)
	n, err := g.batch.run(checkpointScript, a).Int64()
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return n == 1, nil
}

// Orphan is a journaled request whose lease expired: the proxy serving it died (or lost
// Redis for longer than the lease TTL).
type Orphan struct {
	RequestID string
	Event     []byte // the last checkpoint
}

// Orphans returns up to n journaled requests whose lease has expired.
func (g *Gate) Orphans(ctx context.Context, n int64) ([]Orphan, error) {
	ids, err := g.rdb.ZRangeByScore(ctx, g.journalKey(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(time.Now().UnixMilli(), 10), Count: n}).Result()
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	evs, err := g.rdb.HMGet(ctx, g.journalEventsKey(), ids...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Orphan, 0, len(ids))
	for i, id := range ids {
		ev, _ := evs[i].(string)
		if ev == "" {
			// Completed between the two reads, or a torn entry: drop the id.
			g.rdb.ZRem(ctx, g.journalKey(), id)
			continue
		}
		out = append(out, Orphan{RequestID: id, Event: []byte(ev)})
	}
	return out, nil
}

// RefreshBalance makes admission see a committed change of the user's balance outside
// usage (a top-up, a refund, a redeemed code, an adjustment) at once: it drops the user's
// balance snapshot, and the next admission loads it from the ledger, less the debits
// still waiting in the usage stream (primeBalance), which is exact. Dropping, unlike
// moving the snapshot by the amount, can be repeated: a caller whose call failed, or
// whose reply was lost, calls again without counting the change twice.
func (g *Gate) RefreshBalance(ctx context.Context, userID int64) error {
	return g.drop(ctx, g.balanceKey(userID))
}

// Block takes an account out of rotation until the given time, for every proxy at once.
func (g *Gate) Block(ctx context.Context, accountID int64, until time.Time) error {
	ttl := time.Until(until)
	if ttl <= 0 {
		return nil
	}
	// What this process reserved on the account is given back rather than used. (Other
	// proxies' reservations may still send it a request, for at most ReserveIdle; it fails
	// over like any request the account fails.)
	g.reserved.expireWhere(func(_ *shape, h *held) bool { return h.lease.AccountID == accountID })
	g.local.block(accountID, until)
	return g.rdb.Set(ctx, g.AccountStateKey(accountID), until.UnixMilli(), ttl+time.Second).Err()
}

// Unblock puts an account back into rotation (an admin cleared its state).
func (g *Gate) Unblock(ctx context.Context, accountID int64) error {
	return g.rdb.Del(ctx, g.AccountStateKey(accountID)).Err()
}

// Strikes counts an account's recent transient failures (for escalating cooldowns); the
// count decays after window.
func (g *Gate) Strikes(ctx context.Context, accountID int64, window time.Duration) (int64, error) {
	key := g.prefix + "strikes:" + strconv.FormatInt(accountID, 10)
	pipe := g.rdb.TxPipeline()
	incr := pipe.Incr(ctx, key)
	pipe.Expire(ctx, key, window)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	return incr.Val(), nil
}

// FlushSessions drops the sticky bindings of one API key (all keys when keyID is 0).
func (g *Gate) FlushSessions(ctx context.Context, keyID int64) (int, error) {
	// Reservations of this process chose their account by the bindings being dropped.
	g.reserved.expireWhere(func(sh *shape, _ *held) bool {
		return sh.req.Session != "" && (keyID == 0 || sh.req.KeyID == keyID)
	})
	pattern := g.prefix + "sticky:*"
	if keyID != 0 {
		pattern = g.prefix + "sticky:" + strconv.FormatInt(keyID, 10) + ":*"
	}
	n := 0
	iter := g.rdb.Scan(ctx, 0, pattern, 500).Iterator()
	for iter.Next(ctx) {
		if err := g.rdb.Del(ctx, iter.Val()).Err(); err != nil {
			return n, err
		}
		n++
	}
	return n, iter.Err()
}

// SetLogger makes the gate log its background failures (lease renewal).
func (g *Gate) SetLogger(log *slog.Logger) { g.log = log }

// LoadScripts loads the gate's scripts into Redis in one round trip, so that the first
// call of each (a stream's first checkpoint, say) does not meet NOSCRIPT and pay a
// second round trip to load it. Calls load what Redis lacks by themselves, so a failure
// here only costs that.
func (g *Gate) LoadScripts(ctx context.Context) error {
	pipe := g.rdb.Pipeline()
	for _, s := range []*script{admitScript, completeScript, checkpointScript, releaseScript} {
		pipe.ScriptLoad(ctx, s.src)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// Run renews tracked leases, and receives release notifications to wake local waiters,
// until ctx ends.
func (g *Gate) Run(ctx context.Context) {
	go g.renewLoop(ctx)
	if g.reserving() {
		go g.reserveLoop(ctx)
	}
	ps := g.rdb.Subscribe(ctx, g.releaseChannel())
	defer ps.Close()
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if m, ok := msg.(*redis.Message); ok {
			g.waiters.wake(m.Payload)
		}
	}
}
