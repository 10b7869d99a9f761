package limit

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The script calls name up to twenty Redis keys each. Building those names per request
// (a concatenation each) and handing them to go-redis as strings (boxed into an
// interface each) were half of the proxy's allocations per request. A user's, an API
// key's and an account's names never change, so they are built once, boxed once, and
// kept here; the dated ones (spend counters, RPM window) are rebuilt when the day or the
// minute turns.

// names are one user's, key's or account's key names, boxed for the argument lists.
type names struct {
	leases  any    // conc:u|k|a:ID, the concurrency lease set
	waiting any    // waiting:u|k|a:ID, raised while a request waits for a slot
	scope   string // u|k|a:ID, the release channel's payload word
	own     any    // users: bal:ID; accounts: astate:ID; keys: nil
	pend    any    // users: pend:ID (PendingKey); keys: pendk:ID (KeyPendingKey); accounts: nil
	gen     any    // users: bgen:ID, bumped by every drop of the user's counters (Drop)

	spend atomic.Pointer[datedNames] // users and keys: today's (and this month's) spend counters
	rpm   atomic.Pointer[minuteName] // keys: this minute's request counter
}

// datedNames are the spend counters of one UTC day.
type datedNames struct {
	day          int64 // days since the epoch
	daily, month any   // month: keys only
}

type minuteName struct {
	minute int64
	key    any
}

// maxNames bounds each cache; past it the cache starts over (a rebuild costs a few
// concatenations per name, so only memory is at stake).
const maxNames = 1 << 16

// nameCache maps the ids of one kind ("u", "k" or "a") to their names.
type nameCache struct {
	prefix, kind string
	mu           sync.RWMutex
	m            map[int64]*names
}

func (c *nameCache) get(id int64) *names {
	c.mu.RLock()
	n := c.m[id]
	c.mu.RUnlock()
	if n != nil {
		return n
	}
	s := strconv.FormatInt(id, 10)
	n = &names{leases: c.prefix + "conc:" + c.kind + ":" + s, waiting: c.prefix + "waiting:" + c.kind + ":" + s,
		scope: c.kind + ":" + s}
	switch c.kind {
	case "u":
		n.own, n.pend, n.gen = balanceName(c.prefix, s), pendingName(c.prefix, s), genName(c.prefix, s)
	case "k":
		n.pend = keyPendingName(c.prefix, s)
	case "a":
		n.own = c.prefix + "astate:" + s
	}
	c.mu.Lock()
	if len(c.m) >= maxNames || c.m == nil {
		c.m = make(map[int64]*names)
	}
	c.m[id] = n
	c.mu.Unlock()
	return n
}

// spendNames returns the key's or user's spend counters of now's UTC day.
func (c *nameCache) spendNames(n *names, id int64, now time.Time) *datedNames {
	f := formatDay(now)
	if s := n.spend.Load(); s != nil && s.day == f.day {
		return s
	}
	ids := strconv.FormatInt(id, 10)
	s := &datedNames{day: f.day, daily: spendName(c.prefix, c.kind, ids, "d", f.d)}
	if c.kind == "k" {
		s.month = spendName(c.prefix, c.kind, ids, "m", f.m)
	}
	n.spend.Store(s)
	return s
}

// rpmName returns the key's request counter of now's minute.
func (c *nameCache) rpmName(n *names, id int64, now time.Time) any {
	m := now.Unix() / 60
	if r := n.rpm.Load(); r != nil && r.minute == m {
		return r.key
	}
	r := &minuteName{minute: m, key: c.prefix + "rpm:" + strconv.FormatInt(id, 10) + ":" + strconv.FormatInt(m, 10)}
	n.rpm.Store(r)
	return r.key
}

// boxedString keeps the last string boxed by box, for a value callers pass again and
// again (the usage stream's name).
type boxedString struct{ p atomic.Pointer[[2]any] }

func (b *boxedString) box(s string) any {
	if p := b.p.Load(); p != nil && p[0].(string) == s {
		return p[1]
	}
	v := any(s)
	b.p.Store(&[2]any{s, v})
	return v
}

// balanceName is a user's balance snapshot: "bal:ID".
func balanceName(prefix, user string) string { return prefix + "bal:" + user }

// pendingName is a user's debits waiting in the usage stream: "pend:ID".
func pendingName(prefix, user string) string { return prefix + "pend:" + user }

// UsageStream is the Redis stream of usage events (usage.StreamKey): a spend counter's
// load looks at its oldest entry (prime.lua).
func UsageStream(prefix string) string { return prefix + "usage" }

// keyPendingName is an API key's debits waiting in the usage stream: "pendk:ID".
func keyPendingName(prefix, key string) string { return prefix + "pendk:" + key }

// genName is the generation of a user's counters, bumped by every drop (Drop): "bgen:ID".
func genName(prefix, user string) string { return prefix + "bgen:" + user }

// PendingKey counts, in nano-USD, the user's debits that wait in the usage stream for a
// worker to store them in the ledger. A completion that debits the balance snapshot adds
// its amount (complete.lua) and names the key in its stream entry (PendingField); the
// worker takes the amount off when it deletes the stored entry; a balance snapshot loaded
// from the ledger subtracts what is left (Gate.primeBalance). Without it, a snapshot
// loaded while a worker was down or behind forgot every debit in the stream, and the user
// could spend them again. The key exists only while something is pending.
func PendingKey(prefix string, userID int64) string {
	return pendingName(prefix, strconv.FormatInt(userID, 10))
}

// KeyPendingKey counts, in nano-USD, an API key's debits that wait in the usage stream,
// as PendingKey does a user's, for a spend counter of the key loaded from the usage
// events to add (Gate.primeSpend): a counter reset (usage stored without its completion)
// while a worker was down or behind otherwise forgot the key's usage in the stream, and
// its caps let that much through again. A completion adds to it when the key has a
// spending cap (the entry names it in KeyPendingKeyField); replays always do.
func KeyPendingKey(prefix string, keyID int64) string {
	return keyPendingName(prefix, strconv.FormatInt(keyID, 10))
}

// Drop queues on pipe the deletion of counter keys (CounterKeys: balance snapshots and
// spend counters), for the next admission to load them again, and bumps the generation
// of the users whose balance snapshot is among them (bgen:ID, kept a day). A load of any
// of those users' counters under way in any process — it read PostgreSQL before the
// change the drop is for — then finds the generation moved and reads again instead of
// setting what it read (Gate.prime): without it, the drop would be lost, and the counter
// off until it expired. Every drop names the user's balance snapshot with the user's
// other counters (CounterKeys; RefreshBalance drops the snapshot alone). Run pipe as a
// transaction.
func Drop(ctx context.Context, pipe redis.Pipeliner, prefix string, keys ...string) {
	if len(keys) == 0 {
		return
	}
	pipe.Del(ctx, keys...)
	for _, k := range keys {
		if user, ok := strings.CutPrefix(k, balanceName(prefix, "")); ok {
			gen := genName(prefix, user)
			pipe.Incr(ctx, gen)
			pipe.Expire(ctx, gen, 24*time.Hour)
		}
	}
}

// The fields of a usage stream entry that carries a debit: its amount in nano-USD, the
// PendingKey it was added to and, if any, the KeyPendingKey.
const (
	PendingField       = "p"
	PendingKeyField    = "pk"
	KeyPendingKeyField = "pkk"
)

// spendName is a key's ("k") or user's ("u") spend counter of a UTC day (period "d",
// stamp "20060102") or month ("m", "200601"): "spend:k:ID:d:20060102".
func spendName(prefix, kind, id, period, stamp string) string {
	return prefix + "spend:" + kind + ":" + id + ":" + period + ":" + stamp
}

// CounterKeys names the counters a usage event of the user's key at t counts in: the
// user's balance snapshot, the key's spend counters of t's UTC day and month and the
// user's of t's day — the names the gate's caches build (TestCounterKeysMatchTheGate).
func CounterKeys(prefix string, userID, keyID int64, t time.Time) []string {
	u, k := strconv.FormatInt(userID, 10), strconv.FormatInt(keyID, 10)
	t = t.UTC()
	day, month := t.Format("20060102"), t.Format("200601")
	return []string{
		balanceName(prefix, u),
		spendName(prefix, "k", k, "d", day),
		spendName(prefix, "k", k, "m", month),
		spendName(prefix, "u", u, "d", day),
	}
}
