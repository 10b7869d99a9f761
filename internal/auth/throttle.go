package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Throttle limits attempts at an auth endpoint, per client IP and per account email, so
// neither a single client nor a distributed guess at one account gets more than Limit
// tries in any span of Window. Counters live in Redis so every web instance shares them.
//
// Each counter is kept per fixed window, and an attempt is judged by the sliding-window
// estimate: this window's count plus the previous window's, weighted by the share of it
// still less than one Window old. Fixed windows alone let a client make Limit tries just
// before a boundary and Limit more just after it.
type Throttle struct {
	rdb    redis.UniversalClient
	prefix string // e.g. "tg:rl:login:"
	Limit  int64
	Window time.Duration
	now    func() time.Time
}

// NewThrottle returns a throttle whose keys start with prefix+name+":".
func NewThrottle(rdb redis.UniversalClient, prefix, name string, limit int64, window time.Duration) *Throttle {
	return &Throttle{rdb: rdb, prefix: prefix + "rl:" + name + ":", Limit: limit, Window: window, now: time.Now}
}

// Verdict is the outcome of one attempt.
type Verdict struct {
	Allowed    bool
	RetryAfter time.Duration // until an attempt would be allowed again; set when not allowed
}

// Attempt counts one attempt by ip at email and says whether it may proceed. Both
// counters are incremented and the previous window's read in one round trip. Every
// attempt counts, refused ones too: hammering past the limit keeps the client out longer.
func (t *Throttle) Attempt(ctx context.Context, ip, email string) (Verdict, error) {
	now := t.now()
	window, end := t.window(now)
	ipKey, emailKey := t.keys(window, ip, email)
	ipPrev, emailPrev := t.keys(window-1, ip, email)
	pipe := t.rdb.TxPipeline()
	ipCount := pipe.Incr(ctx, ipKey)
	pipe.ExpireNX(ctx, ipKey, 2*t.Window) // it weighs in through the next window
	emailCount := pipe.Incr(ctx, emailKey)
	pipe.ExpireNX(ctx, emailKey, 2*t.Window)
	prev := pipe.MGet(ctx, ipPrev, emailPrev)
	if _, err := pipe.Exec(ctx); err != nil {
		return Verdict{}, fmt.Errorf("count attempt: %w", err)
	}
	var wait time.Duration
	for i, count := range []int64{ipCount.Val(), emailCount.Val()} {
		var before int64
		if v, ok := prev.Val()[i].(string); ok {
			before, _ = strconv.ParseInt(v, 10, 64)
		}
		if w := t.wait(count, before, now, end); w > wait {
			wait = w
		}
	}
	if wait > 0 {
		return Verdict{RetryAfter: wait}, nil
	}
	return Verdict{Allowed: true}, nil
}

// wait is how long until one more attempt would be allowed, given count attempts in the
// window ending at end (this one included) and before in the window before it; zero when
// this attempt is allowed.
func (t *Throttle) wait(count, before int64, now, end time.Time) time.Duration {
	w, limit := float64(t.Window), float64(t.Limit)
	if float64(count)+float64(before)*float64(end.Sub(now))/w <= limit {
		return 0
	}
	// Within this window, the previous one's weight fades: the next attempt (count+1)
	// fits once before·(end−at)/Window ≤ Limit−count−1.
	if float64(count+1) <= limit && before > 0 {
		at := end.Add(-time.Duration((limit - float64(count) - 1) * w / float64(before)))
		return max(at.Sub(now), time.Second)
	}
	// Otherwise in the next one, as this window's count fades: 1 + count·(end+Window−at)/
	// Window ≤ Limit.
	at := end.Add(t.Window - time.Duration((limit-1)*w/float64(count)))
	return max(at.Sub(now), time.Second)
}

// Forgive clears the email's counters after a success, so a user who mistyped a few
// times is not locked out later. The IP counters stay.
func (t *Throttle) Forgive(ctx context.Context, email string) error {
	window, _ := t.window(t.now())
	_, emailKey := t.keys(window, "", email)
	_, emailPrev := t.keys(window-1, "", email)
	if err := t.rdb.Del(ctx, emailKey, emailPrev).Err(); err != nil {
		return fmt.Errorf("clear attempt counter: %w", err)
	}
	return nil
}

func (t *Throttle) window(now time.Time) (int64, time.Time) {
	w := now.UnixNano() / int64(t.Window)
	return w, time.Unix(0, (w+1)*int64(t.Window))
}

// keys names the counters of one window. The email is hashed so Redis never holds
// addresses in clear.
func (t *Throttle) keys(window int64, ip, email string) (ipKey, emailKey string) {
	sum := sha256.Sum256([]byte(NormalizeEmail(email)))
	w := strconv.FormatInt(window, 10)
	return t.prefix + "ip:" + ip + ":" + w, t.prefix + "email:" + hex.EncodeToString(sum[:12]) + ":" + w
}
