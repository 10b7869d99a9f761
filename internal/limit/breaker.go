package limit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Breaker is a go-redis hook that fails every command of its client at once for a while
// after one timed out. When Redis hangs or its network drops packets, a command fails
// only at the client's read timeout (2 s in the proxy), and every request would wait that
// long for its 503 — several times over when its path makes several calls (a completion's
// script, then its counter reset). With the breaker, one command a window waits and the
// others fail at once: an admission is refused with a 503, a completion falls back to
// PostgreSQL. Once Redis answers again, service resumes within a window. A refused or
// reset connection fails fast by itself and opens nothing: one blip must not refuse
// everyone for a window.
type Breaker struct {
	window    time.Duration
	downUntil atomic.Int64 // Unix ns; 0: closed
}

// NewBreaker returns a breaker that stays open for window after a timeout.
func NewBreaker(window time.Duration) *Breaker { return &Breaker{window: window} }

// ErrRedisDown is what commands get while the breaker is open.
var ErrRedisDown = errors.New("redis did not answer in time; not tried again yet")

// open returns the error for a command refused now, or nil when it may go.
func (b *Breaker) open() error {
	until := b.downUntil.Load()
	if until == 0 {
		return nil
	}
	left := time.Duration(until - time.Now().UnixNano())
	if left <= 0 {
		return nil
	}
	return fmt.Errorf("%w (for %s more)", ErrRedisDown, left.Round(time.Millisecond))
}

// observe opens the breaker on a timeout and closes it on any answer.
func (b *Breaker) observe(err error) {
	switch {
	case timedOut(err):
		b.downUntil.Store(time.Now().Add(b.window).UnixNano())
	case b.downUntil.Load() != 0 && (err == nil || errors.Is(err, redis.Nil) || isReply(err)):
		b.downUntil.Store(0)
	}
}

// timedOut: err is a network timeout (the client's dial, read or write deadline). A
// caller's own context deadline is not one: a short one says nothing about Redis.
func timedOut(err error) bool {
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// isReply: err is Redis's own answer (a script's error, NOSCRIPT), so Redis is there.
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

func (b *Breaker) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := b.open(); err != nil {
			return nil, err
		}
		c, err := next(ctx, network, addr)
		if timedOut(err) {
			b.observe(err)
		}
		return c, err
	}
}

func (b *Breaker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := b.open(); err != nil {
			cmd.SetErr(err)
			return err
		}
		err := next(ctx, cmd)
		b.observe(err)
		return err
	}
}

func (b *Breaker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if err := b.open(); err != nil {
			for _, c := range cmds {
				c.SetErr(err)
			}
			return err
		}
		err := next(ctx, cmds)
		b.observe(err)
		return err
	}
}
