package config

import (
	"fmt"
	"strings"
	"testing"
)

// TestRedisOutageSetting: REDIS_OUTAGE defaults to refuse, takes serve, and refuses
// anything else with a sentence naming it.
func TestRedisOutageSetting(t *testing.T) {
	setRequired(t)
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

// TestOAuthRefreshSettings: the refresh interval is at least a second (periodic runs are
// unique per interval, in River's whole seconds) and the lead is longer than the interval.
func TestOAuthRefreshSettings(t *testing.T) {
	setRequired(t)
	for _, c := range []struct{ every, ahead, err string }{
		{"", "", ""},
		{"2s", "2h", ""},
		{"500ms", "2h", "OAUTH_REFRESH_INTERVAL must be at least 1s, not 500ms"},
		{"0s", "2h", "OAUTH_REFRESH_INTERVAL must be at least 1s, not 0s"},
		{"10m", "5m", "OAUTH_REFRESH_AHEAD (5m0s) must be longer than OAUTH_REFRESH_INTERVAL (10m0s): a token must not expire between two runs"},
	} {
		t.Setenv("OAUTH_REFRESH_INTERVAL", c.every)
		t.Setenv("OAUTH_REFRESH_AHEAD", c.ahead)
		_, err := LoadWorker()
		if got := fmt.Sprint(err); (c.err == "" && err != nil) || (c.err != "" && got != c.err) {
			t.Errorf("OAUTH_REFRESH_INTERVAL=%q OAUTH_REFRESH_AHEAD=%q: %v, want %q", c.every, c.ahead, err, c.err)
		}
	}
}

// setRequired sets the variables every process requires.
func setRequired(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://127.0.0.1/x")
	t.Setenv("REDIS_URL", "redis://127.0.0.1:6379")
	t.Setenv("SECRET_KEY", strings.Repeat("ab", 32))
}
