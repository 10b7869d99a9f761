package config

import (
	"strings"
	"testing"
)

// TestRedisOutageSetting: REDIS_OUTAGE defaults to refuse, takes serve, and refuses
// anything else with a sentence naming it.
func TestRedisOutageSetting(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://127.0.0.1/x")
	t.Setenv("REDIS_URL", "redis://127.0.0.1:6379")
	t.Setenv("SECRET_KEY", strings.Repeat("ab", 32))
	for _, c := range []struct{ value, want, err string }{
		{"", "refuse", ""},
		{"serve", "serve", ""},
		{"yes", "", `REDIS_OUTAGE must be refuse or serve, not "yes"`},
	} {
		if c.value != "" {
			t.Setenv("REDIS_OUTAGE", c.value)
		}
		cfg, err := LoadProxy()
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Fatalf("REDIS_OUTAGE=%q: %v, want %q", c.value, err, c.err)
			}
			continue
		}
		if err != nil || cfg.Limits.RedisOutage != c.want {
			t.Fatalf("REDIS_OUTAGE=%q: %q, %v; want %q", c.value, cfg.Limits.RedisOutage, err, c.want)
		}
	}
}
