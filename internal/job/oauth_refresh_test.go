package job_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/tollgate/tollgate/internal/account"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/fakellm"
	"github.com/tollgate/tollgate/internal/job"
	"github.com/tollgate/tollgate/internal/secret"
	"github.com/tollgate/tollgate/internal/testenv"
)

// TestOAuthRefreshDue: the job refreshes exactly the OAuth accounts whose token expires
// within the lead, once each; a refused refresh token is reported without taking its
// account out of rotation (its access token still works) and without stopping the others;
// accounts in error wait for an operator; a second run finds nothing due.
func TestOAuthRefreshDue(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	fake := fakellm.New(fakellm.Options{AccessTokenTTL: time.Hour})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	box, err := secret.NewBox(bytes.Repeat([]byte{7}, 32), secret.PurposeAccount)
	must(t, err)
	q := sqlc.New()
	add := func(name, refresh string, expires time.Time, state string) int64 {
		t.Helper()
		sealed, err := account.Seal(box, account.Credential{AccessToken: "at-" + name, RefreshToken: refresh, ExpiresAt: expires})
		must(t, err)
		a, err := q.AccountInsert(ctx, b.pool, sqlc.AccountInsertParams{
			Name: name, Provider: "anthropic", Kind: "oauth", BaseURL: srv.URL, SecretEnc: sealed,
			Weight: 1, Models: []string{}, ModelMap: []byte("{}"), TokenExpiresAt: &expires,
		})
		must(t, err)
		if state != "active" {
			must(t, q.AccountSetState(ctx, b.pool, sqlc.AccountSetStateParams{ID: a.ID, State: state, StateReason: "test"}))
		}
		return a.ID
	}
	now := time.Now()
	fake.SetRefreshToken("rt-due")
	fake.SetRefreshToken("rt-later")
	fake.SetRefreshToken("rt-broken-account")
	due := add("due", "rt-due", now.Add(5*time.Minute), "active")
	expired := add("expired", "rt-unknown", now.Add(-time.Minute), "active") // the provider refuses its refresh token
	later := add("later", "rt-later", now.Add(2*time.Hour), "active")
	broken := add("broken", "rt-broken-account", now.Add(time.Minute), "error")

	refresher := account.NewRefresher(b.pool, rdb, prefix, box, map[string]account.OAuthClient{
		"anthropic": {TokenURL: srv.URL + "/v1/oauth/token", ClientID: "test-client"},
	}, b.log)
	w := job.NewOAuthRefreshWorker(refresher, 10*time.Minute, b.log)
	err = w.Work(ctx, &river.Job[job.OAuthRefreshArgs]{})
	if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("run with a refused refresh token: err %v, want the provider's invalid_grant", err)
	}
	if n := fake.Refreshes(); n != 1 {
		t.Fatalf("%d refreshes, want 1 (the due account's)", n)
	}
	state := func(id int64) (access string, expires time.Time, st string) {
		t.Helper()
		a, err := q.AccountGetByID(ctx, b.pool, id)
		must(t, err)
		c, err := account.Open(box, a.SecretEnc)
		must(t, err)
		if a.TokenExpiresAt != nil {
			expires = *a.TokenExpiresAt
		}
		return c.AccessToken, expires, a.State
	}
	if access, expires, _ := state(due); access == "at-due" || expires.Before(now.Add(50*time.Minute)) {
		t.Fatalf("due account: token %q expiring %s, want a new one expiring in about an hour", access, expires)
	}
	if access, _, st := state(expired); access != "at-expired" || st != "active" {
		t.Fatalf("account with a refused refresh token: token %q, state %s; want it unchanged and still active", access, st)
	}
	if access, _, _ := state(later); access != "at-later" {
		t.Fatal("an account not due was refreshed")
	}
	if access, _, st := state(broken); access != "at-broken" || st != "error" {
		t.Fatal("an account in error was refreshed")
	}

	// The next run finds only the refused one due again, and asks for it again.
	seq := fake.LastSeq()
	if err := w.Work(ctx, &river.Job[job.OAuthRefreshArgs]{}); err == nil {
		t.Fatal("second run: the refused token was not reported")
	}
	var tokenRequests int
	for _, e := range fake.ServedSince(seq) {
		if e.Endpoint == fakellm.EndpointOAuthToken {
			tokenRequests++
		}
	}
	if tokenRequests != 1 || fake.Refreshes() != 1 {
		t.Fatalf("second run: %d token requests, %d refreshes in all; want 1 request (the refused account) and no new refresh", tokenRequests, fake.Refreshes())
	}
}
