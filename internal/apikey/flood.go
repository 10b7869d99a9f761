package apikey

import (
	"errors"
	"sync"
	"time"
)

// ErrBusy is returned when too many unknown keys are being looked up: beyond a steady
// rate, cache misses are not sent to PostgreSQL. A flood of random keys then costs a
// bounded number of queries; a real new key is asked to retry in a moment.
var ErrBusy = errors.New("too many unknown API keys being checked; retry shortly")

// missLimiter is a token bucket for cache-miss lookups.
type missLimiter struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newMissLimiter(perSecond, burst int) *missLimiter {
	return &missLimiter{rate: float64(perSecond), burst: float64(burst), tokens: float64(burst)}
}

func (l *missLimiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
