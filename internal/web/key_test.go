package web_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/apikey"
	"github.com/tollgate/tollgate/internal/invalidate"
)

var secretRE = regexp.MustCompile(`tg-[A-Za-z0-9_-]{43}`)

func TestKeyCreate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.createUser(t, "ada@example.com", "correct horse battery", "user")
	c := b.signedIn(t, "ada@example.com", "correct horse battery")

	for _, tc := range []struct {
		name   string
		header http.Header
	}{{"plain form", nil}, {"htmx", htmx}} {
		t.Run(tc.name, func(t *testing.T) {
			res := b.postForm(t, c, "/keys", url.Values{"name": {"laptop " + tc.name}}, tc.header)
			if res.status != http.StatusOK {
				t.Fatalf("status %d\n%s", res.status, res.body)
			}
			if got := res.header.Get("Cache-Control"); got == "" || !bytes.Contains([]byte(got), []byte("no-store")) {
				t.Errorf("Cache-Control %q: a page with a secret must not be stored", got)
			}
			secret := secretRE.FindString(res.body)
			if secret == "" {
				t.Fatalf("no secret in the response:\n%s", res.body)
			}
			mustContain(t, res.body, "Copy this secret now.", "laptop "+tc.name)
			if tc.header != nil {
				mustNotContain(t, res.body, "<html")
				mustContain(t, res.body, `hx-swap-oob="afterbegin:#key-rows"`)
			} else {
				mustContain(t, res.body, "<html")
			}

			// Only the hash is stored.
			keys, err := b.q.APIKeyListByUser(context.Background(), b.db, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			k := keys[0]
			if k.Name != "laptop "+tc.name || k.Status != "active" {
				t.Errorf("stored key %+v", k)
			}
			if !bytes.Equal(k.Hash, apikey.Hash(secret)) {
				t.Error("stored hash is not the SHA-256 of the secret shown")
			}
			if k.DisplayPrefix != apikey.Display(secret) || len(k.DisplayPrefix) >= len(secret) {
				t.Errorf("display prefix %q", k.DisplayPrefix)
			}
			var leaks int
			if err := b.db.QueryRow(context.Background(),
				"SELECT count(*) FROM api_keys k WHERE k::text LIKE '%' || $1 || '%'", secret[3:]).Scan(&leaks); err != nil {
				t.Fatal(err)
			}
			if leaks != 0 {
				t.Error("the plaintext secret is stored in api_keys")
			}

			// Shown once: the list afterwards has the key but not its secret.
			list := b.get(t, c, "/keys", nil)
			mustContain(t, list.body, "laptop "+tc.name, k.DisplayPrefix)
			mustNotContain(t, list.body, secret)
		})
	}

	t.Run("name required", func(t *testing.T) {
		res := b.postForm(t, c, "/keys", url.Values{"name": {"   "}}, htmx)
		if res.status != http.StatusUnprocessableEntity {
			t.Fatalf("status %d", res.status)
		}
		mustContain(t, res.body, "Give the key a name", `aria-invalid="true"`)
		if secretRE.MatchString(res.body) {
			t.Error("a refused form shows a secret")
		}
	})
}

func TestKeyRevoke(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	u := b.createUser(t, "ada@example.com", "correct horse battery", "user")
	b.createUser(t, "eve@example.com", "correct horse battery", "user")
	c := b.signedIn(t, "ada@example.com", "correct horse battery")

	sub := b.rdb.Subscribe(ctx, invalidate.Channel(b.prefix))
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
		t.Fatal(err)
	}
	// A channel, not ReceiveMessage with a timeout: a timed-out read reconnects the
	// subscription and can lose the next message.
	msgs := sub.Channel()
	next := func(wait time.Duration) (string, bool) {
		select {
		case m := <-msgs:
			return m.Payload, true
		case <-time.After(wait):
			return "", false
		}
	}

	// What goes out on Redis is recorded in PostgreSQL too, for a proxy that missed it.
	feed := invalidate.NewFeed(b.db)
	if err := feed.Start(ctx); err != nil {
		t.Fatal(err)
	}
	recorded := func(want ...invalidate.Event) {
		t.Helper()
		got, err := feed.Poll(ctx)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("recorded invalidations %+v (%v), want %+v", got, err, want)
		}
	}
	create := func(name string) int64 {
		t.Helper()
		b.postForm(t, c, "/keys", url.Values{"name": {name}}, htmx)
		keys, err := b.q.APIKeyListByUser(ctx, b.db, u.ID)
		if err != nil || keys[0].Name != name {
			t.Fatalf("create %s: %v", name, err)
		}
		// A new key is announced to the proxies too.
		payload, got := next(5 * time.Second)
		if ev, ok := invalidate.Parse(payload); !got || !ok || ev.ID != hex.EncodeToString(keys[0].Hash) {
			t.Fatalf("create %s announced %q", name, payload)
		}
		recorded(invalidate.Event{Kind: invalidate.Key, ID: hex.EncodeToString(keys[0].Hash)})
		return keys[0].ID
	}

	t.Run("htmx", func(t *testing.T) {
		id := create("ci")
		path := "/keys/" + strconv.FormatInt(id, 10) + "/revoke"
		res := b.postForm(t, c, path, nil, htmx)
		if res.status != http.StatusOK {
			t.Fatalf("status %d\n%s", res.status, res.body)
		}
		mustContain(t, res.body, `id="key-`+strconv.FormatInt(id, 10)+`"`, "revoked")
		mustNotContain(t, res.body, "<html", path) // no revoke form on a revoked key

		k, err := b.q.APIKeyGetForUser(ctx, b.db, sqlcKeyParams(id, u.ID))
		if err != nil || k.Status != "revoked" || k.RevokedAt == nil {
			t.Fatalf("stored key after revoke: %+v, %v", k, err)
		}

		payload, got := next(5 * time.Second)
		if !got {
			t.Fatal("no invalidation published")
		}
		ev, ok := invalidate.Parse(payload)
		if !ok || ev.Kind != invalidate.Key || ev.ID != hex.EncodeToString(k.Hash) {
			t.Errorf("invalidation %q, want key:%x", payload, k.Hash)
		}
		recorded(invalidate.Event{Kind: invalidate.Key, ID: hex.EncodeToString(k.Hash)})

		var action, target string
		var actor int64
		if err := b.db.QueryRow(ctx, "SELECT action, target_id, actor_id FROM audit_log WHERE action = 'api_key.revoke'").Scan(&action, &target, &actor); err != nil {
			t.Fatalf("audit row: %v", err)
		}
		if target != strconv.FormatInt(id, 10) || actor != u.ID {
			t.Errorf("audit row target %s actor %d", target, actor)
		}

		// Revoking again changes nothing and publishes nothing.
		if res := b.postForm(t, c, path, nil, htmx); res.status != http.StatusOK {
			t.Errorf("second revoke: status %d", res.status)
		}
		if payload, got := next(300 * time.Millisecond); got {
			t.Errorf("second revoke published %q", payload)
		}
		recorded()
	})

	t.Run("plain form", func(t *testing.T) {
		id := create("laptop")
		res := b.postForm(t, c, "/keys/"+strconv.FormatInt(id, 10)+"/revoke", nil, nil)
		if res.status != http.StatusSeeOther || res.header.Get("Location") != "/keys" {
			t.Fatalf("status %d location %q", res.status, res.header.Get("Location"))
		}
		mustContain(t, b.get(t, c, "/keys", nil).body, "Key “laptop” revoked.")
		next(5 * time.Second) // its revocation
		k, _ := b.q.APIKeyGetForUser(ctx, b.db, sqlcKeyParams(id, u.ID))
		recorded(invalidate.Event{Kind: invalidate.Key, ID: hex.EncodeToString(k.Hash)})
	})

	t.Run("someone else's key", func(t *testing.T) {
		id := create("mine")
		eve := b.signedIn(t, "eve@example.com", "correct horse battery")
		if res := b.postForm(t, eve, "/keys/"+strconv.FormatInt(id, 10)+"/revoke", nil, nil); res.status != http.StatusNotFound {
			t.Errorf("status %d", res.status)
		}
		k, _ := b.q.APIKeyGetForUser(ctx, b.db, sqlcKeyParams(id, u.ID))
		if k.Status != "active" {
			t.Errorf("another user revoked the key")
		}
		recorded()
	})
}
