package web_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/limit"
	"github.com/tollgate/tollgate/internal/testenv"
)

func TestAdjustBalance(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	admin, user, userID := b.adminAndUser(t)
	snap := b.setSnapshot(t, userID, 0)
	path := "/admin/users/" + strconv.FormatInt(userID, 10)

	mustContain(t, b.get(t, admin, "/admin/users?q=ADA", nil).body, userEmail, path)
	page := b.get(t, admin, path, nil)
	nonce := regexp.MustCompile(`name="nonce" value="([0-9a-f]{32})"`).FindStringSubmatch(page.body)
	if nonce == nil {
		t.Fatalf("no nonce in the form:\n%s", page.body)
	}

	for _, tc := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"amount": {"0"}, "note": {"x"}, "nonce": {nonce[1]}}, "non-zero amount"},
		{url.Values{"amount": {"ten"}, "note": {"x"}, "nonce": {nonce[1]}}, "non-zero amount"},
		{url.Values{"amount": {"5"}, "note": {" "}, "nonce": {nonce[1]}}, "Say why"},
		{url.Values{"amount": {"5000000"}, "note": {"x"}, "nonce": {nonce[1]}}, "at most $1,000,000"},
		{url.Values{"amount": {"5"}, "note": {"x"}, "nonce": {"forged"}}, "form had expired"},
	} {
		res := b.postForm(t, admin, path+"/adjust", tc.form, nil)
		if res.status != http.StatusUnprocessableEntity {
			t.Errorf("%v: status %d", tc.form, res.status)
		}
		mustContain(t, res.body, tc.want)
	}

	credit := url.Values{"amount": {"+12.50"}, "note": {"refund for the outage"}, "nonce": {nonce[1]}}
	res := b.postForm(t, admin, path+"/adjust", credit, nil)
	if res.status != http.StatusSeeOther || res.header.Get("Location") != path {
		t.Fatalf("adjust: status %d", res.status)
	}
	// The same form again (a double click): applied once.
	if res := b.postForm(t, admin, path+"/adjust", credit, nil); res.status != http.StatusSeeOther {
		t.Fatalf("resubmit: status %d", res.status)
	}
	mustContain(t, b.get(t, admin, path, nil).body, "applied already", `id="balance">$12.5000<`)
	res = b.postForm(t, admin, path+"/adjust", url.Values{"amount": {"−2.5"}, "note": {"goodwill reversed"}, "nonce": {"0123456789abcdef0123456789abcdef"}}, nil)
	if res.status != http.StatusSeeOther {
		t.Fatalf("debit: status %d", res.status)
	}
	if got := b.balance(t, userID); got != 10_000_000_000 {
		t.Fatalf("balance %d, want $10", got)
	}
	b.requireSnapshotDropped(t, snap)
	var rows int
	var actor int64
	if err := b.db.QueryRow(ctx, "SELECT count(*), max(actor_id) FROM wallet_tx WHERE kind = 'adjust' AND user_id = $1", userID).Scan(&rows, &actor); err != nil || rows != 2 {
		t.Fatalf("%d adjust rows (%v)", rows, err)
	}
	if actions := b.auditActions(t); len(actions) != 2 || actions[0] != "user.balance_adjust user:"+strconv.FormatInt(userID, 10) {
		t.Fatalf("audit %q", actions)
	}
	if d := b.auditDetail(t, "user.balance_adjust"); d["amount_nano"] != float64(-2_500_000_000) || d["note"] != "goodwill reversed" {
		t.Fatalf("audit detail %v", d)
	}
	// The user sees it with the note in their wallet.
	mustContain(t, b.get(t, user, "/wallet", nil).body, "adjust", "-$2.5000", "goodwill reversed", "+$12.5000", "refund for the outage")
	if res := b.postForm(t, admin, "/admin/users/999999/adjust", credit, nil); res.status != http.StatusNotFound {
		t.Fatalf("unknown user: %d", res.status)
	}
}

// TestAdjustBalanceWhileRedisIsDown: a credit committed while Redis does not answer
// reaches the proxies' admission once Redis returns — the user's balance snapshot is
// dropped by a retry in the background — not only when the stale snapshot expires.
func TestAdjustBalanceWhileRedisIsDown(t *testing.T) {
	t.Parallel()
	rs := testenv.DurableRedisServer(t) // keeps the stale snapshot across the outage
	rdb := rs.Client()
	b := setupWith(t, setupOpts{redis: rdb})
	ctx := context.Background()
	admin, _, userID := b.adminAndUser(t)
	snap := limit.NewGate(rdb, b.prefix, nil, nil, limit.Options{}).BalanceKey(userID)
	if err := rdb.Set(ctx, snap, 0, time.Hour).Err(); err != nil { // a used-up wallet, as the proxies saw it
		t.Fatal(err)
	}
	path := "/admin/users/" + strconv.FormatInt(userID, 10)
	nonce := regexp.MustCompile(`name="nonce" value="([0-9a-f]{32})"`).FindStringSubmatch(b.get(t, admin, path, nil).body)
	if nonce == nil {
		t.Fatal("no nonce in the form")
	}

	rs.Stop()
	res := b.postForm(t, admin, path+"/adjust", url.Values{"amount": {"5"}, "note": {"top-up during the outage"}, "nonce": {nonce[1]}}, nil)
	if res.status != http.StatusSeeOther {
		t.Fatalf("adjust with Redis down: %d\n%s", res.status, res.body)
	}
	if got := b.balance(t, userID); got != 5_000_000_000 {
		t.Fatalf("balance %d, want $5", got)
	}
	rs.Start()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		n, err := rdb.Exists(ctx, snap).Result()
		if err == nil && n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stale snapshot is still there 10 s after Redis returned (%d, %v)", n, err)
		}
	}
}
