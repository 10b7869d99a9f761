package web_test

import (
	"net/http"
	"testing"
	"time"
)

func TestDashboard(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.createUser(t, "ada@example.com", "correct horse battery", "user")
	b.topUp(t, u, 25_000_000_000, "order:42") // $25
	f := b.usageFixture(t, u)
	now := time.Now().UTC()
	// Today's events a minute or two ago, but never before today's start (UTC): run in the
	// first minutes of a day, the test put them in yesterday.
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time {
		if at := now.Add(-d); at.After(today) {
			return at
		}
		return today
	}
	b.insertUsage(t, u, f,
		usageEvent{requestID: "req_a", at: ago(time.Minute), model: "claude-sonnet-4-5", in: 1200, out: 345, cacheW: 100, cacheR: 2048, billed: 27_777_778, status: 200},
		usageEvent{requestID: "req_b", at: ago(2 * time.Minute), model: "claude-haiku-4-5", in: 10, out: 5, billed: 1_000_000, status: 200},
		usageEvent{requestID: "req_old", at: now.Add(-72 * time.Hour), model: "claude-opus-4-1", in: 1, out: 1, billed: 5_000_000_000, status: 529},
	)
	other := b.createUser(t, "eve@example.com", "correct horse battery", "user")
	b.topUp(t, other, 99_000_000_000, "order:43")

	res := b.get(t, b.signedIn(t, "ada@example.com", "correct horse battery"), "/", nil)
	if res.status != http.StatusOK {
		t.Fatalf("status %d", res.status)
	}
	mustContain(t, res.body,
		`id="balance">$25.0000<`,
		`id="today-requests">2<`,
		`id="today-spend">$0.0288<`, // 27_777_778 + 1_000_000 nano
		testProxyURL+"/v1/messages",
		"$TOLLGATE_API_KEY",
		// usage rows: key name, model, tokens in/out/cache, cost, status
		"laptop", "claude-sonnet-4-5", "1,200", "345", "100 / 2,048", "$0.0278",
		"claude-opus-4-1", "529",
		// ledger
		"topup", "+$25.0000", "order:42",
	)
	mustNotContain(t, res.body, "$99.0000", "order:43") // another user's money
}
