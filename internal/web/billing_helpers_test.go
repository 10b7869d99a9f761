package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/invalidate"
	"github.com/tollgate/tollgate/internal/limit"
)

const (
	adminEmail    = "admin@example.com"
	adminPassword = "correct horse battery admin"
	userEmail     = "ada@example.com"
	userPassword  = "correct horse battery"
)

// adminAndUser creates an admin and a user and signs both in.
func (b *testBundle) adminAndUser(t *testing.T) (admin, user *http.Client, userID int64) {
	t.Helper()
	b.createUser(t, adminEmail, adminPassword, "admin")
	u := b.createUser(t, userEmail, userPassword, "user")
	return b.signedIn(t, adminEmail, adminPassword), b.signedIn(t, userEmail, userPassword), u.ID
}

// invalidations listens to what the web app tells the proxies: the Redis messages, and
// the events recorded in PostgreSQL, which must say the same.
type invalidations struct {
	sub  *redis.PubSub
	feed *invalidate.Feed
}

func (b *testBundle) listen(t *testing.T) *invalidations {
	t.Helper()
	ctx := context.Background()
	sub := b.rdb.Subscribe(ctx, invalidate.Channel(b.prefix))
	if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	feed := invalidate.NewFeed(b.db)
	if err := feed.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return &invalidations{sub: sub, feed: feed}
}

// next returns the next n messages, failing after a few seconds without them, or if the
// events recorded since the last call are not the same (the change's transaction
// records them before the messages go out).
func (l *invalidations) next(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for len(out) < n {
		msg, err := l.sub.ReceiveTimeout(context.Background(), 5*time.Second)
		if err != nil {
			t.Fatalf("waiting for invalidation %d of %d (got %q): %v", len(out)+1, n, out, err)
		}
		if m, ok := msg.(*redis.Message); ok {
			out = append(out, m.Payload)
		}
	}
	evs, err := l.feed.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var recorded []string
	for _, ev := range evs {
		recorded = append(recorded, string(ev.Kind)+":"+ev.ID)
	}
	if !slices.Equal(slices.Sorted(slices.Values(recorded)), slices.Sorted(slices.Values(out))) {
		t.Fatalf("recorded invalidations %q, published %q", recorded, out)
	}
	return out
}

// auditActions lists the audit log's actions, oldest first, with their targets.
func (b *testBundle) auditActions(t *testing.T) []string {
	t.Helper()
	rows, err := b.db.Query(context.Background(), "SELECT action || ' ' || target_type || ':' || target_id FROM audit_log ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// auditDetail returns the detail of the newest audit row with the action.
func (b *testBundle) auditDetail(t *testing.T, action string) map[string]any {
	t.Helper()
	var raw []byte
	err := b.db.QueryRow(context.Background(), "SELECT detail FROM audit_log WHERE action = $1 ORDER BY id DESC LIMIT 1", action).Scan(&raw)
	if err != nil {
		t.Fatalf("audit row %s: %v", action, err)
	}
	var d map[string]any
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// setSnapshot gives the user a balance snapshot in Redis, as the proxy's admission does.
func (b *testBundle) setSnapshot(t *testing.T, userID, nano int64) string {
	t.Helper()
	key := limit.NewGate(b.rdb, b.prefix, nil, nil, limit.Options{}).BalanceKey(userID)
	if err := b.rdb.Set(context.Background(), key, nano, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	return key
}

// requireSnapshotDropped: the balance snapshot is gone, for the proxies' next admission
// to load the changed balance from the ledger.
func (b *testBundle) requireSnapshotDropped(t *testing.T, key string) {
	t.Helper()
	if v, err := b.rdb.Get(context.Background(), key).Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("balance snapshot %q (%v) after a credit: want it dropped", v, err)
	}
}

func (b *testBundle) balance(t *testing.T, userID int64) int64 {
	t.Helper()
	v, err := b.q.UserBalanceGet(context.Background(), b.db, userID)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var codeRE = regexp.MustCompile(`TG-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}`)
