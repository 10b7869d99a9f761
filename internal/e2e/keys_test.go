package e2e

import (
	"context"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/apikey"
	"github.com/tollgate/tollgate/internal/invalidate"
	"github.com/tollgate/tollgate/internal/limit"
	"github.com/tollgate/tollgate/internal/testenv"
)

// TestKeyOptionsAndInvalidation: a key's IP allowlist, expiry and revocation are
// enforced, and a change made in the database reaches the proxy through an
// invalidation message without waiting for the cache to expire.
func TestKeyOptionsAndInvalidation(t *testing.T) {
	s := newStack(t)
	hash := hex.EncodeToString(apikey.Hash(s.seeded.DemoKey))
	waitFor := func(what string, wantStatus int, wantMsg string) {
		t.Helper()
		s.waitForDemoKey(t, what, time.Now(), wantStatus, wantMsg)
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

// TestRecordedInvalidationsReachTheProxy: a change recorded in PostgreSQL with its
// invalidation (invalidate.Record) reaches the proxy without a Redis message — one that
// was lost, and one that the web app (a cmd/web process) could not send because Redis
// was down while the proxy served without it (REDIS_OUTAGE=serve): a user revokes a key
// during the outage. Without the proxy's reading of the recorded events, the key stays
// cached, and usable, for five minutes.
func TestRecordedInvalidationsReachTheProxy(t *testing.T) {
	rs := testenv.DurableRedisServer(t)
	s := newStack(t, func(su *setup) {
		su.redis = rs
		su.limits = limit.Options{RedisOutage: limit.OutageServe}
	})
	web := s.startWeb(t)
	user := web.session(t) // signing in needs Redis (the login throttle); a session does not
	ctx := context.Background()
	hash := hex.EncodeToString(apikey.Hash(s.seeded.DemoKey))
	change := func(sql string) time.Time {
		t.Helper()
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
			return invalidate.Record(ctx, tx, invalidate.Event{Kind: invalidate.Key, ID: hash})
		})
		if err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	waitFor := func(what string, since time.Time, wantStatus int, wantMsg string) {
		t.Helper()
		s.waitForDemoKey(t, what, since, wantStatus, wantMsg)
	}
	if status, _ := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
		t.Fatalf("fresh key: %d", status)
	}

	// Redis is up, and the message is lost (never sent).
	at := change("UPDATE api_keys SET ip_allowlist = '{10.9.0.0/16}'")
	waitFor("IP allowlist, message lost", at, 403, "may not be used from 127.0.0.1")
	at = change("UPDATE api_keys SET ip_allowlist = '{}'")
	waitFor("allowlist lifted, message lost", at, 200, "")

	// Redis is down: the proxy serves known keys without it, and still hears of a
	// revocation.
	rs.Stop()
	if status, e := s.post(t, s.seeded.DemoKey, smallBody); status != 200 {
		t.Fatalf("served without Redis: %d %+v", status, e)
	}
	var keyID int64
	if err := s.pool.QueryRow(ctx, "SELECT id FROM api_keys WHERE user_id = $1", s.seeded.DemoUserID).Scan(&keyID); err != nil {
		t.Fatal(err)
	}
	resp, err := user.PostForm(web.url+"/keys/"+itoa(keyID)+"/revoke", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	at = time.Now()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke in the web app while Redis is down: %d", resp.StatusCode)
	}
	waitFor("revoked in the web app while Redis is down", at, 401, "revoked")
}

// waitForDemoKey sends the demo key's request until the answer has wantStatus and an
// error message containing wantMsg, and fails if that takes more than 5 s from since
// (when the change it waits for was made); it logs how long the change took to apply.
func (s *stack) waitForDemoKey(t *testing.T, what string, since time.Time, wantStatus int, wantMsg string) {
	t.Helper()
	for {
		status, body := s.post(t, s.seeded.DemoKey, smallBody)
		if status == wantStatus && strings.Contains(body.Error.Message, wantMsg) {
			t.Logf("%s: applied after %s", what, time.Since(since).Round(time.Millisecond))
			return
		}
		if time.Since(since) > 5*time.Second {
			t.Fatalf("%s: status %d %+v after %s, want %d %q", what, status, body, time.Since(since), wantStatus, wantMsg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *stack) exec(t *testing.T, sql string) {
	t.Helper()
	if _, err := s.pool.Exec(context.Background(), sql); err != nil {
		t.Fatal(err)
	}
}
