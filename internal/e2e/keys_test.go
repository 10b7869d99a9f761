package e2e

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/apikey"
)

// TestKeyOptionsAndInvalidation: a key's IP allowlist, expiry and revocation are
// enforced, and a change made in the database reaches the proxy through an
// invalidation message without waiting for the cache to expire.
func TestKeyOptionsAndInvalidation(t *testing.T) {
	s := newStack(t)
	hash := hex.EncodeToString(apikey.Hash(s.seeded.DemoKey))
	waitFor := func(what string, wantStatus int, wantMsg string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			status, body := s.post(t, s.seeded.DemoKey, smallBody)
			if status == wantStatus && strings.Contains(body.Error.Message, wantMsg) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: status %d %+v, want %d %q", what, status, body, wantStatus, wantMsg)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if status, _ := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
		t.Fatalf("fresh key: %d", status)
	}

	s.exec(t, "UPDATE api_keys SET ip_allowlist = '{10.9.0.0/16}'")
	s.publish("key:" + hash)
	waitFor("IP allowlist", 403, "may not be used from 127.0.0.1")

	s.exec(t, "UPDATE api_keys SET ip_allowlist = '{127.0.0.0/8}', expires_at = now() - interval '1 minute'")
	s.publish("key:" + hash)
	waitFor("expired", 401, "expired")

	s.exec(t, "UPDATE api_keys SET expires_at = NULL, status = 'disabled'")
	s.publish("user:" + itoa(s.seeded.DemoUserID))
	waitFor("disabled", 403, "disabled")

	s.exec(t, "UPDATE api_keys SET status = 'revoked', revoked_at = now()")
	s.publish("key:" + hash)
	waitFor("revoked", 401, "revoked")
}

func (s *stack) exec(t *testing.T, sql string) {
	t.Helper()
	if _, err := s.pool.Exec(context.Background(), sql); err != nil {
		t.Fatal(err)
	}
}
