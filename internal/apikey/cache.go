package apikey

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/singleflight"

	"github.com/tollgate/tollgate/internal/db/sqlc"
)

// Info is what the proxy knows about a key: everything needed to authorise a request
// without touching PostgreSQL.
type Info struct {
	KeyID           int64
	UserID          int64
	GroupID         int64
	Name            string
	Status          string // key status: active|disabled|revoked
	UserStatus      string // owner status: active|disabled
	Models          []string
	IPAllowlist     []netip.Prefix
	ExpiresAt       *time.Time
	Concurrency     int32 // the key's own concurrency limit; 0: unlimited
	UserConcurrency int32 // the owner's limit (user setting, else group default); 0: unlimited
	RPM             int32
	DailyCap        int64 // nano-USD; 0: none
	MonthlyCap      int64
	UserDaily       int64
}

// Refusal explains why an existing key may not be used right now.
func (i *Info) Refusal(now time.Time, clientIP netip.Addr) string {
	switch {
	case i.Status == "revoked":
		return "this API key was revoked"
	case i.Status != "active":
		return "this API key is disabled"
	case i.UserStatus != "active":
		return "the account that owns this API key is disabled"
	case i.ExpiresAt != nil && !now.Before(*i.ExpiresAt):
		return "this API key has expired"
	case len(i.IPAllowlist) > 0 && !slices.ContainsFunc(i.IPAllowlist, func(p netip.Prefix) bool { return p.Contains(clientIP.Unmap()) }):
		return "this API key may not be used from " + clientIP.String()
	}
	return ""
}

// AllowsModel reports whether the key may use the model (an empty list allows all).
func (i *Info) AllowsModel(model string) bool {
	return len(i.Models) == 0 || slices.Contains(i.Models, model)
}

// ErrUnknown is returned for a key that does not exist (or is malformed).
var ErrUnknown = errors.New("unknown API key")

// Loader fetches a key by hash; it returns ErrUnknown when there is none.
type Loader func(ctx context.Context, hash []byte) (Info, error)

// DBLoader loads keys from PostgreSQL with one query.
func DBLoader(db sqlc.DBTX) Loader {
	q := sqlc.New()
	return func(ctx context.Context, hash []byte) (Info, error) {
		r, err := q.APIKeyAuthGetByHash(ctx, db, hash)
		if errors.Is(err, pgx.ErrNoRows) {
			return Info{}, ErrUnknown
		}
		if err != nil {
			return Info{}, err
		}
		info := Info{
			KeyID: r.ID, UserID: r.UserID, GroupID: r.GroupID, Name: r.Name, Status: r.Status,
			UserStatus: r.UserStatus, Models: r.Models, IPAllowlist: r.IPAllowlist, ExpiresAt: r.ExpiresAt,
			DailyCap: deref(r.DailyCapNano), MonthlyCap: deref(r.MonthlyCapNano), UserDaily: deref(r.UserDailyCapNano),
		}
		info.Concurrency = deref(r.Concurrency)
		info.UserConcurrency = r.DefaultConcurrency
		if r.UserConcurrency != nil {
			info.UserConcurrency = *r.UserConcurrency
		}
		if r.Rpm != nil {
			info.RPM = *r.Rpm
		}
		return info, nil
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// Cache maps key hashes to Info in process memory. A miss loads once (single-flight);
// unknown keys are cached briefly too, so a flood of one bad key costs one query.
// Entries expire after TTL even without an invalidation message, which bounds how long
// a lost pub/sub message can leave a revoked key usable.
type Cache struct {
	load   Loader
	ttl    time.Duration
	negTTL time.Duration
	max    int
	now    func() time.Time

	misses  *missLimiter
	strange *missLimiter // lookups of keys absent from the known set
	known   known

	mu     sync.RWMutex
	m      map[[32]byte]cacheEntry
	byUser map[int64]map[[32]byte]struct{}
	sf     singleflight.Group
}

type cacheEntry struct {
	info    Info
	unknown bool
	expires time.Time
}

// NewCache returns a cache over load with the given positive TTL.
func NewCache(load Loader, ttl time.Duration) *Cache {
	return &Cache{
		load: load, ttl: ttl, negTTL: 30 * time.Second, max: 200_000, now: time.Now,
		// 200 lookups a second with a burst of 400: far above what real clients need
		// (a key misses once per TTL per proxy), far below what a flood would cost.
		misses: newMissLimiter(200, 400),
		// Keys absent from the known set are almost surely random: a trickle of lookups
		// still lets a brand-new key through if its announcement was missed.
		strange: newMissLimiter(10, 50),
		m:       map[[32]byte]cacheEntry{}, byUser: map[int64]map[[32]byte]struct{}{},
	}
}

// Get returns the key's info, or ErrUnknown.
func (c *Cache) Get(ctx context.Context, plaintext string) (Info, error) {
	if !WellFormed(plaintext) {
		return Info{}, ErrUnknown
	}
	var buf [128]byte // keys are shorter: the copy stays on the stack
	h := sha256.Sum256(append(buf[:0], plaintext...))
	now := c.now()
	c.mu.RLock()
	e, ok := c.m[h]
	c.mu.RUnlock()
	if ok && now.Before(e.expires) {
		if e.unknown {
			return Info{}, ErrUnknown
		}
		return e.info, nil
	}
	return c.miss(ctx, h, now)
}

// miss looks a key up that the cache does not hold (apart from Get, so that the hash
// stays on Get's stack: the closure below would move it to the heap on every call).
func (c *Cache) miss(ctx context.Context, h [32]byte, now time.Time) (Info, error) {
	// Budgets are spent per lookup, inside the single flight: concurrent requests with
	// one new key cost one token.
	v, err, _ := c.sf.Do(string(h[:]), func() (any, error) {
		if present, loaded := c.known.contains(h[:]); loaded && !present && !c.strange.allow(now) {
			return Info{}, ErrUnknown
		}
		if !c.misses.allow(now) {
			return Info{}, ErrBusy
		}
		info, err := c.load(ctx, h[:])
		switch {
		case errors.Is(err, ErrUnknown):
			c.put(h, cacheEntry{unknown: true, expires: c.now().Add(c.negTTL)})
		case err == nil:
			c.put(h, cacheEntry{info: info, expires: c.now().Add(c.ttl)})
			c.known.add(h[:])
		}
		return info, err
	})
	if err != nil {
		return Info{}, err
	}
	return v.(Info), nil
}

func (c *Cache) put(h [32]byte, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k := range c.m { // evict an arbitrary entry: map order is random
			c.removeLocked(k)
			break
		}
	}
	c.m[h] = e
	if !e.unknown {
		set := c.byUser[e.info.UserID]
		if set == nil {
			set = map[[32]byte]struct{}{}
			c.byUser[e.info.UserID] = set
		}
		set[h] = struct{}{}
	}
}

func (c *Cache) removeLocked(h [32]byte) {
	e, ok := c.m[h]
	if !ok {
		return
	}
	delete(c.m, h)
	if !e.unknown {
		if set := c.byUser[e.info.UserID]; set != nil {
			delete(set, h)
			if len(set) == 0 {
				delete(c.byUser, e.info.UserID)
			}
		}
	}
}

// InvalidateHash drops one key, given the hex of its hash. The announcement also means
// the key exists (it was created or changed), so it joins the known set.
func (c *Cache) InvalidateHash(hexHash string) {
	b, err := hex.DecodeString(hexHash)
	if err != nil || len(b) != 32 {
		return
	}
	c.known.add(b)
	c.mu.Lock()
	c.removeLocked([32]byte(b))
	c.mu.Unlock()
}

// InvalidateUser drops every key of a user.
func (c *Cache) InvalidateUser(userID int64) {
	c.mu.Lock()
	for h := range c.byUser[userID] {
		c.removeLocked(h)
	}
	c.mu.Unlock()
}

// Flush drops everything (after a reconnect to the invalidation channel, when messages
// may have been missed).
func (c *Cache) Flush() {
	c.mu.Lock()
	c.m = map[[32]byte]cacheEntry{}
	c.byUser = map[int64]map[[32]byte]struct{}{}
	c.mu.Unlock()
}

// Len is the number of cached entries.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
