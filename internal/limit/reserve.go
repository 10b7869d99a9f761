package limit

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Reserved admissions.
//
// Admission is a Redis round trip on the request's path: on an idle machine it is most
// of what the proxy adds to a short request (bench/README.md, sixth round). But traffic
// comes in runs — an agent's turns, a batch job, a busy client — and the next request of
// a run asks what the last one asked: same key, same session, same candidate accounts,
// same limits (its "shape"). So when a request of a run completes, the completion's
// pipeline also runs the admission script for the next request of its shape, right
// after the completion's debit: the same checks (balance, spending caps, RPM,
// concurrency, the account choice and the sticky binding) and the same leases. This
// process holds the result for up to ReserveIdle; the next request of that shape gets
// it from Admit without a round trip. One that nobody takes is released: its leases
// and its count in the key's RPM window are given back.
//
// What a reservation changes: its request was admitted up to ReserveIdle before it
// arrived, so — as with requests admitted at the same moment — a balance or a cap that
// other requests exhausted meanwhile can be overdrawn by one request per reservation
// (a shape holds at most maxHeldPerShape). And a reservation holds a slot and a request
// of the key's RPM window while it waits. So none is made while a request waits for one
// of its scopes, nor when it would take the last free unit of any limit (admit.lua); a
// request that finds a limit full releases this process's reservations on it and tries
// again before it waits or is refused; one made in the previous minute is not used (it
// counted there). What remains: a reservation held by another proxy can keep a request
// waiting (or refuse it, for RPM) until it is released, at most ReserveIdle later, when
// the other requests have taken every other unit of the limit. Limits hold across proxies
// as before: reservations are leases like any other.
//
// A run is recognised by its gaps: a shape is busy once one of its requests is admitted
// while another runs or within ReserveIdle of the previous one's completion. The first
// request of a run and isolated requests make their two round trips as before and
// reserve nothing.

const (
	maxHeldPerShape = 64
	maxHeld         = 4096
	maxShapes       = 1 << 14
)

// shapeKey finds a request's shape. Limits and candidates are in the sum, so a change of
// them makes a new shape (the old one's reservations go unused and are released);
// shape.req confirms the match, as the sum is a hash.
type shapeKey struct {
	key     int64
	session string
	sum     uint64 // of the user, limits and candidates
}

// shape is one kind of request and what this process knows of its traffic.
type shape struct {
	key  shapeKey
	req  Request   // as admitted, without a request id
	done time.Time // when the latest request of this shape completed
	seen time.Time // when the latest request of this shape was admitted
	busy bool      // the latest admission came while another ran, or soon after a completion
	held []held    // reservations, oldest first
	// inflight counts its admitted requests not completed yet: a shape is not forgotten
	// while a request of it runs (a long stream's run goes on when it completes).
	inflight int
}

type held struct {
	lease  Lease
	until  time.Time // released when not taken by then
	rpm    any       // the RPM window counter it counted in; nil without an RPM limit
	minute int64     // the minute of that window
	lost   bool      // its reply was lost: one of several guesses at what it holds
}

// reservations are one process's reserved admissions.
type reservations struct {
	mu     sync.Mutex
	shapes map[shapeKey]*shape
	n      int    // held in all
	lost   []held // reservations whose reply was lost: released by the next sweep
	closed bool   // ReleaseReserved ran: no more reservations
	seed   maphash.Seed

	made, taken, released atomic.Int64
}

func (r *reservations) keyOf(req *Request) shapeKey {
	var h maphash.Hash
	h.SetSeed(r.seed)
	var b [8 * 6]byte
	put := func(i int, v int64) {
		for j := range 8 {
			b[i*8+j] = byte(v >> (8 * j))
		}
	}
	put(0, req.UserID)
	put(1, int64(req.UserConcurrency)<<32|int64(req.KeyConcurrency))
	put(2, int64(req.KeyRPM))
	put(3, req.KeyDailyCap)
	put(4, req.KeyMonthlyCap)
	put(5, req.UserDailyCap)
	h.Write(b[:])
	for _, c := range req.Candidates {
		put(0, c.ID)
		put(1, int64(c.Priority)<<32|int64(c.Weight))
		put(2, int64(c.MaxConcurrency))
		h.Write(b[:24])
	}
	return shapeKey{key: req.KeyID, session: req.Session, sum: h.Sum64()}
}

// sameShape: a and b ask for the same admission, request id aside.
func sameShape(a, b *Request) bool {
	return a.UserID == b.UserID && a.KeyID == b.KeyID && a.Session == b.Session &&
		a.UserConcurrency == b.UserConcurrency && a.KeyConcurrency == b.KeyConcurrency && a.KeyRPM == b.KeyRPM &&
		a.KeyDailyCap == b.KeyDailyCap && a.KeyMonthlyCap == b.KeyMonthlyCap && a.UserDailyCap == b.UserDailyCap &&
		slices.Equal(a.Candidates, b.Candidates)
}

// take notes an admission of req's shape at now and hands it a reservation if one is
// held. The shape is nil when reservations are off or too many shapes are known.
func (r *reservations) take(req *Request, now time.Time, idle time.Duration) (*shape, Lease, bool) {
	k := r.keyOf(req)
	r.mu.Lock()
	defer r.mu.Unlock()
	sh := r.shapes[k]
	switch {
	case sh != nil && !sameShape(&sh.req, req):
		return nil, Lease{}, false // a hash collision: this request goes without
	case sh == nil:
		if len(r.shapes) >= maxShapes {
			return nil, Lease{}, false
		}
		if r.shapes == nil {
			r.shapes = map[shapeKey]*shape{}
		}
		sh = &shape{key: k, req: *req}
		sh.req.RequestID = ""
		sh.req.Candidates = slices.Clone(req.Candidates)
		r.shapes[k] = sh
	}
	// Busy: another request of the shape is still running (they come back to back, or
	// side by side), or the last one completed within the idle time.
	sh.busy = sh.inflight > 0 || !sh.done.IsZero() && now.Sub(sh.done) <= idle
	sh.seen = now
	for i := len(sh.held) - 1; i >= 0; i-- { // the newest: its checks are the freshest
		h := sh.held[i]
		if !now.Before(h.until) {
			continue // expired; the sweep releases it
		}
		if h.rpm != nil && now.Unix()/60 != h.minute {
			// It counted in the previous minute's window, not in this one's.
			sh.held[i].until = time.Time{}
			continue
		}
		sh.held = slices.Delete(sh.held, i, i+1)
		r.n--
		sh.inflight++
		r.taken.Add(1)
		l := h.lease
		l.Reserved = true
		return sh, l, true
	}
	return sh, Lease{}, false
}

// want notes the completion of a request of sh at now and reports whether it should
// reserve an admission for the next one (again: its request asked for it).
func (r *reservations) want(sh *shape, now time.Time, again bool) (Request, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sh.done = now
	sh.inflight = max(sh.inflight-1, 0)
	if r.closed || !again || !sh.busy || len(sh.held) >= maxHeldPerShape || r.n >= maxHeld || r.shapes[sh.key] != sh {
		return Request{}, false
	}
	return sh.req, true
}

// admitted notes that a request of sh was admitted in full (not from a reservation).
func (r *reservations) admitted(sh *shape) {
	r.mu.Lock()
	sh.inflight++
	r.mu.Unlock()
}

// put keeps a reservation made for sh. It reports false when the reservation cannot be
// used (the shape was forgotten meanwhile, or reservations stopped): the caller releases
// it.
func (r *reservations) put(sh *shape, h held) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.made.Add(1)
	if r.closed || r.shapes[sh.key] != sh {
		return false
	}
	sh.held = append(sh.held, h)
	r.n++
	return true
}

// putLost keeps reservations that may hold leases though their reply was lost, for the
// next sweep to release.
func (r *reservations) putLost(hs ...held) {
	r.mu.Lock()
	r.lost = append(r.lost, hs...)
	r.mu.Unlock()
}

// expireWhere expires the reservations that match (all when match is nil).
func (r *reservations) expireWhere(match func(sh *shape, h *held) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, sh := range r.shapes {
		for i := range sh.held {
			if match == nil || match(sh, &sh.held[i]) {
				sh.held[i].until = time.Time{}
			}
		}
	}
}

// due removes and returns the reservations not taken in time, and forgets shapes that
// have been quiet for long.
func (r *reservations) due(now time.Time, forget time.Duration) []held {
	r.mu.Lock()
	defer r.mu.Unlock()
	out, lost := r.lost, len(r.lost)
	r.lost = nil
	for k, sh := range r.shapes {
		kept := sh.held[:0]
		for _, h := range sh.held {
			if now.Before(h.until) {
				kept = append(kept, h)
			} else {
				out = append(out, h)
			}
		}
		clear(sh.held[len(kept):])
		sh.held = kept
		if len(kept) == 0 && sh.inflight == 0 && now.Sub(sh.seen) > forget && now.Sub(sh.done) > forget {
			delete(r.shapes, k)
		}
	}
	r.n -= len(out) - lost
	return out
}

// Reservations reports the reserved admissions made, taken by a request, and released unused
// since the process started (for metrics). Released counts every reservation given up
// untaken, including those whose release call failed: their leases then expire with the
// lease TTL, like those of a process that died.
func (g *Gate) Reservations() (made, taken, released int64) {
	return g.reserved.made.Load(), g.reserved.taken.Load(), g.reserved.released.Load()
}

func (g *Gate) reserving() bool { return g.opts.ReserveIdle > 0 }

// reservation builds the admission call that reserves one for the next request of sh's
// shape, to run right after a completion; nil when none is wanted (reservations.want).
func (g *Gate) reservation(sh *shape, now time.Time, again bool) (*scriptCall, Request) {
	req, ok := g.reserved.want(sh, now, again)
	if !ok {
		return nil, Request{}
	}
	req.RequestID = NewRequestID()
	return &scriptCall{script: admitScript, args: g.admitArgs(req, 0, false, true, now)}, req
}

// kept files the reply of the reservation call c, which ran after head (the completion).
func (g *Gate) kept(ctx context.Context, sh *shape, req Request, head, c *scriptCall, now time.Time) {
	res, err := c.cmd.Int64Slice()
	if err == nil && (len(res) != 2 || res[0] != 1) {
		return // refused: it holds nothing
	}
	h := held{
		lease: Lease{RequestID: req.RequestID, UserID: req.UserID, KeyID: req.KeyID,
			sets: heldSets(req), shape: sh},
		until: now.Add(g.opts.ReserveIdle),
	}
	if req.KeyRPM > 0 {
		h.rpm, h.minute = g.keys.rpmName(g.keys.get(req.KeyID), req.KeyID, now), now.Unix()/60
	}
	if err != nil {
		// The script may have run and its reply been lost: give back whatever it may
		// hold, on whichever candidate it chose (release.lua touches only what it finds).
		lost := make([]held, 0, len(req.Candidates))
		h.lost = true
		for _, cand := range req.Candidates {
			h.lease.AccountID = cand.ID
			lost = append(lost, h)
		}
		g.reserved.putLost(lost...)
		return
	}
	h.lease.AccountID = res[1]
	if head.noscript || c.noscript || !g.reserved.put(sh, h) {
		// Redis had lost its scripts, so maybe its state: one retried and the other not
		// may have run out of order. Or the shape was forgotten, or reservations stopped.
		g.release(ctx, []held{h})
	}
}

// reserveLoop releases the reservations no request took in time.
func (g *Gate) reserveLoop(ctx context.Context) {
	t := time.NewTicker(max(g.opts.ReserveIdle/4, 20*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A shape quiet for longer than ReserveIdle would not be busy at its next
		// admission anyway: forgetting it loses nothing, and keeps the map to the shapes
		// of the last few seconds (a flood of one-off sessions would fill it otherwise).
		g.release(ctx, g.reserved.due(time.Now(), 2*g.opts.ReserveIdle))
	}
}

// ReleaseReserved gives back every reservation this process holds and makes no more (at
// shutdown: the process will not serve them).
func (g *Gate) ReleaseReserved(ctx context.Context) {
	g.reserved.mu.Lock()
	g.reserved.closed = true
	g.reserved.mu.Unlock()
	g.reserved.expireWhere(nil)
	g.release(ctx, g.reserved.due(time.Now(), 0))
}

// reclaim releases, at once, this process's reservations that count against the limit a
// request found full (admission code 2, 3, 4 or 5), so the request can have their unit
// instead of waiting or being refused. It reports whether there were any.
func (g *Gate) reclaim(ctx context.Context, code int64, req *Request) bool {
	if !g.reserving() {
		return false
	}
	found := false
	g.reserved.expireWhere(func(_ *shape, h *held) bool {
		l := &h.lease
		var hit bool
		switch code {
		case 2:
			hit = l.UserID == req.UserID && l.holdsUser()
		case 3:
			hit = l.KeyID == req.KeyID && l.holdsKey()
		case 4:
			hit = l.KeyID == req.KeyID && h.rpm != nil
		case 5:
			hit = slices.ContainsFunc(req.Candidates, func(c Candidate) bool { return c.ID == l.AccountID })
		}
		found = found || hit && !h.until.IsZero()
		return hit
	})
	if found {
		g.release(ctx, g.reserved.due(time.Now(), time.Hour))
	}
	return found
}

// release runs the release script for each reservation, in pipelines.
func (g *Gate) release(ctx context.Context, hs []held) {
	for len(hs) > 0 {
		batch := hs[:min(len(hs), maxBatch)]
		hs = hs[len(batch):]
		var first, last *scriptCall
		for _, h := range batch {
			l := h.lease
			u, k, acc := g.users.get(l.UserID), g.keys.get(l.KeyID), g.accounts.get(l.AccountID)
			rpm, counted := h.rpm, "1"
			if rpm == nil {
				rpm, counted = g.c.rpmNone, "0"
			}
			a := evalArgs(releaseScript, 8, 5)
			a = append(a, u.leases, k.leases, acc.leases, rpm, g.c.releaseChannel, u.waiting, k.waiting, acc.waiting,
				l.RequestID, flag(l.holdsUser()), flag(l.holdsKey()), counted, u.scope+" "+k.scope+" "+acc.scope)
			c := &scriptCall{script: releaseScript, args: a}
			if first == nil {
				first = c
			} else {
				last.then = c
			}
			last = c
		}
		g.batch.do(first)
		for c := first; c != nil; c = c.then {
			if err := c.cmd.Err(); err != nil {
				// They expire with their lease TTL like the leases of a process that died.
				if g.log != nil && ctx.Err() == nil {
					g.log.Warn("release reserved admissions (their leases expire by themselves)", "err", err)
				}
				break
			}
		}
		for _, h := range batch {
			if !h.lost {
				g.reserved.released.Add(1)
			}
		}
	}
}

var requestIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewRequestID returns "req_" + 26 random base32 characters: unique without
// coordination. Request ids are minted here because they are the members of the lease
// sets, and a reservation names its request before the request exists.
func NewRequestID() string {
	var b [16]byte
	rand.Read(b[:]) //nolint:errcheck // never fails
	return "req_" + requestIDEncoding.EncodeToString(b[:])
}
