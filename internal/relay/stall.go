package relay

import (
	"context"
	"io"
	"sync/atomic"
	"time"
)

// stallGuard ends an upstream exchange that stops making progress, with one timer per
// exchange:
//
//   - a streamed request whose upstream sends no response headers within
//     Config.HeaderTimeout fails (class upstream_timeout), and fails over like a
//     connection error: a hung account does not hold the client until StreamLimit;
//   - a stream whose upstream sends nothing for Config.IdleTimeout is cut (class
//     upstream_stalled) and billed for what it reported, which releases the request's
//     concurrency slots instead of holding them until StreamLimit.
//
// Only a read of the upstream blocked for the whole period counts as a stall: while the
// proxy is busy writing to a slow client it is not reading, and that is not the
// upstream's fault. Reads are counted on entry and on exit (odd: one is under way), so
// a flowing stream costs two atomic adds per network read and no timer work: the timer
// looks at the count when it fires and re-arms itself while it moves.
type stallGuard struct {
	cancel context.CancelFunc
	timer  *time.Timer
	idle   time.Duration
	body   io.Reader
	calls  atomic.Uint64
	seen   uint64 // calls at the last look (the timer's goroutine only)
	state  atomic.Uint32
}

const (
	guardHeaders uint32 = iota // waiting for the response headers
	guardIdle                  // watching the stream's reads
	guardOff                   // stopped
	stalledHeaders
	stalledIdle
)

// newStallGuard starts guarding an exchange whose context cancel ends; headers is the
// header timeout (0: none until watch).
func newStallGuard(cancel context.CancelFunc, headers time.Duration) *stallGuard {
	g := &stallGuard{cancel: cancel}
	if headers > 0 {
		g.timer = time.AfterFunc(headers, g.fire)
	} else {
		g.state.Store(guardOff)
	}
	return g
}

// watch stops the header timer (the headers came) and, when idle > 0, guards the reads
// of body from now on; it returns the reader to use.
func (g *stallGuard) watch(body io.Reader, idle time.Duration) io.Reader {
	if g.state.CompareAndSwap(guardHeaders, guardOff) {
		g.timer.Stop()
	}
	if idle <= 0 || g.state.Load() != guardOff {
		return body // no idle limit, or the header timer fired as the headers came
	}
	g.body, g.idle = body, idle
	g.state.Store(guardIdle)
	if g.timer == nil {
		g.timer = time.AfterFunc(idle, g.fire)
	} else {
		g.timer.Reset(idle)
	}
	return g
}

func (g *stallGuard) Read(p []byte) (int, error) {
	g.calls.Add(1)
	n, err := g.body.Read(p)
	g.calls.Add(1)
	return n, err
}

// fire runs on the timer's goroutine. A stream is cut once one read has been under way
// from one look to the next, so between IdleTimeout and twice that after its last byte.
func (g *stallGuard) fire() {
	switch g.state.Load() {
	case guardHeaders:
		if g.state.CompareAndSwap(guardHeaders, stalledHeaders) {
			g.cancel()
		}
	case guardIdle:
		n := g.calls.Load()
		if n != g.seen || n%2 == 0 {
			// Reads moved since the last look, or none is under way (the proxy is
			// writing to a slow client): look again a period later.
			g.seen = n
			g.timer.Reset(g.idle)
			return
		}
		if g.state.CompareAndSwap(guardIdle, stalledIdle) {
			g.cancel()
		}
	}
}

// stop ends the guard (a stall it found stays reported).
func (g *stallGuard) stop() {
	if g.state.CompareAndSwap(guardHeaders, guardOff) || g.state.CompareAndSwap(guardIdle, guardOff) {
		g.timer.Stop()
	}
}

// stalled returns stalledHeaders, stalledIdle or 0.
func (g *stallGuard) stalled() uint32 {
	if s := g.state.Load(); s == stalledHeaders || s == stalledIdle {
		return s
	}
	return 0
}
