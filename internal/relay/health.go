package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/schedule"
)

// Cooldowns for transient failures escalate with an account's recent strikes:
// 5 s, 10 s, 20 s … capped at 5 min; strikes decay after 10 min without failures.
const (
	baseCooldown  = 5 * time.Second
	maxCooldown   = 5 * time.Minute
	strikeWindow  = 10 * time.Minute
	errorStateFor = 100 * 365 * 24 * time.Hour // "until an admin clears it"
)

// failoverClass names the failures another account may fix; "" means relay as is
// (a 400 is the client's problem and would fail anywhere).
func failoverClass(status int) string {
	switch {
	case status == 429:
		return "rate_limited"
	case status == 529:
		return "overloaded"
	case status == 401:
		return "auth_failed"
	case status == 403:
		return "forbidden"
	case status >= 500:
		return "server_error"
	}
	return ""
}

// classify fills in when the account may be used again, from the response.
func classify(o *outcome, h http.Header, now time.Time) {
	msg := errorMessage(o.body)
	switch o.class {
	case "rate_limited":
		o.retryAt = rateLimitReset(h, now)
		o.reason = "rate limited by the provider"
		code, resetAt := usageLimit(o.body, now)
		switch code {
		case "usage_limit_reached":
			// A ChatGPT plan's usage window is used up: out until it resets.
			o.reason = "the plan's usage limit is reached"
			if !resetAt.IsZero() {
				o.retryAt = resetAt
			}
		case "insufficient_quota":
			// No credit left on the upstream account: only the operator can fix that.
			o.class, o.reason = "quota_exhausted", "the provider account has no quota left"
		}
	case "auth_failed":
		o.reason = "the provider rejected the credential (401)"
	case "forbidden":
		o.reason = "the provider refused the credential (403)"
	case "overloaded":
		o.reason = "the provider is overloaded (529)"
	default:
		o.reason = "the provider failed (" + strconv.Itoa(o.status) + ")"
	}
	if msg != "" {
		o.reason += ": " + truncate(msg, 200)
	}
}

// rateLimitReset reads when a 429 ends: retry-after (seconds or HTTP date), then the
// latest of Anthropic's unified window resets (epoch seconds) or RFC 3339 resets.
func rateLimitReset(h http.Header, now time.Time) time.Time {
	if v := h.Get("Retry-After"); v != "" {
		if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
			return now.Add(time.Duration(secs) * time.Second)
		}
		if t, err := http.ParseTime(v); err == nil && t.After(now) {
			return t
		}
	}
	var latest time.Time
	for k, vs := range h {
		lk := strings.ToLower(k)
		if !strings.HasPrefix(lk, "anthropic-ratelimit-") || !strings.HasSuffix(lk, "-reset") || len(vs) == 0 {
			continue
		}
		var t time.Time
		if secs, err := strconv.ParseInt(vs[0], 10, 64); err == nil {
			t = time.Unix(secs, 0)
		} else if p, err := time.Parse(time.RFC3339, vs[0]); err == nil {
			t = p
		}
		if t.After(latest) && t.After(now) {
			latest = t
		}
	}
	return latest
}

// usageLimit reads an OpenAI-style 429 body: the error code (or type) and, for Codex's
// usage_limit_reached, when the window resets (resets_at, else resets_in_seconds).
func usageLimit(body []byte, now time.Time) (code string, resetAt time.Time) {
	var m struct {
		Error struct {
			Type            string `json:"type"`
			Code            string `json:"code"`
			ResetsAt        int64  `json:"resets_at"`
			ResetsInSeconds int64  `json:"resets_in_seconds"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &m) != nil {
		return "", time.Time{}
	}
	code = m.Error.Code
	if code == "" {
		code = m.Error.Type
	}
	switch {
	case m.Error.ResetsAt > now.Unix():
		resetAt = time.Unix(m.Error.ResetsAt, 0)
	case m.Error.ResetsInSeconds > 0:
		resetAt = now.Add(time.Duration(m.Error.ResetsInSeconds) * time.Second)
	}
	return code, resetAt
}

func errorMessage(body []byte) string {
	i := bytes.Index(body, []byte(`"message"`))
	if i < 0 {
		return ""
	}
	rest := body[i+len(`"message"`):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	rest = rest[j+1:]
	k := bytes.IndexByte(rest, '"')
	if k < 0 {
		return ""
	}
	return string(rest[:k])
}

// penalize takes a failing account out of rotation for every proxy at once (Redis),
// and records the state for the console asynchronously (PostgreSQL, once per change).
func (s *Server) penalize(acc *schedule.Account, o *outcome) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	now := time.Now()
	state, until := "cooling", o.retryAt
	switch o.class {
	case "auth_failed", "forbidden", "quota_exhausted":
		state, until = "error", now.Add(errorStateFor)
	case "rate_limited":
		state = "limited"
	}
	if until.IsZero() {
		strikes, err := s.cfg.Gate.Strikes(ctx, acc.ID, strikeWindow)
		if err != nil {
			strikes = 1
		}
		until = now.Add(min(baseCooldown<<min(strikes-1, 10), maxCooldown))
	}
	if err := s.cfg.Gate.Block(ctx, acc.ID, until); err != nil {
		s.log.Error("take account out of rotation", "account_id", acc.ID, "err", err)
	}
	s.log.Warn("account out of rotation", "account_id", acc.ID, "account", acc.Name, "state", state,
		"until", until.Format(time.RFC3339), "reason", o.reason)
	var u *time.Time
	if state != "error" {
		u = &until
	}
	select {
	case s.states <- stateChange{accountID: acc.ID, state: state, reason: o.reason, until: u}:
	default:
		s.log.Warn("account state queue full; state not persisted", "account_id", acc.ID)
	}
}

type stateChange struct {
	accountID int64
	state     string
	reason    string
	until     *time.Time
}

// stateWriter persists account state changes off the hot path, then tells every proxy
// to reload its account snapshot (so accounts in error stop being candidates at all).
func (s *Server) stateWriter(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-s.states:
			if s.cfg.SetAccountState == nil {
				continue
			}
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := s.cfg.SetAccountState(wctx, c.accountID, c.state, c.reason, c.until); err != nil {
				s.log.Error("persist account state", "account_id", c.accountID, "err", err)
			}
			cancel()
		}
	}
}
