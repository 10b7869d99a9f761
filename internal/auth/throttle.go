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

// Throttle limits attempts at an auth endpoint with Redis fixed-window counters, one per
// client IP and one per account email, so neither a single client nor a distributed
// guess at one account gets more than Limit tries per Window. Counters live in Redis so
// every web instance shares them.
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
	RetryAfter time.Duration // until the current window ends; set when not allowed
}

// Attempt counts one attempt by ip at email and says whether it may proceed. Both
// counters are incremented in one round trip; every attempt counts, so hammering past
// the limit does not extend it beyond the window either.
func (t *Throttle) Attempt(ctx context.Context, ip, email string) (Verdict, error) {
	now := t.now()
	window, end := t.window(now)
	ipKey, emailKey := t.keys(window, ip, email)
	pipe := t.rdb.TxPipeline()
	ipCount := pipe.Incr(ctx, ipKey)
	pipe.ExpireNX(ctx, ipKey, t.Window)
	emailCount := pipe.Incr(ctx, emailKey)
	pipe.ExpireNX(ctx, emailKey, t.Window)
	if _, err := pipe.Exec(ctx); err != nil {
		return Verdict{}, fmt.Errorf("count attempt: %w", err)
	}
	if ipCount.Val() > t.Limit || emailCount.Val() > t.Limit {
		return Verdict{RetryAfter: end.Sub(now)}, nil
	}
	return Verdict{Allowed: true}, nil
}

// Forgive clears the email's counter after a success, so a user who mistyped a few
// times is not locked out later in the window. The IP counter stays.
func (t *Throttle) Forgive(ctx context.Context, email string) error {
	window, _ := t.window(t.now())
	_, emailKey := t.keys(window, "", email)
	if err := t.rdb.Del(ctx, emailKey).Err(); err != nil {
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
