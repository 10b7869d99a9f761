package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// generateBatch has the admin generate codes and returns them as the page showed them.
func (b *testBundle) generateBatch(t *testing.T, admin *http.Client, form url.Values) []string {
	t.Helper()
	res := b.postForm(t, admin, "/admin/redeem", form, nil)
	if res.status != http.StatusOK {
		t.Fatalf("generate: status %d\n%s", res.status, res.body)
	}
	mustContain(t, res.body, "shown only once", `id="new-codes"`)
	start := strings.Index(res.body, `id="new-codes"`)
	end := strings.Index(res.body[start:], "</textarea>")
	return codeRE.FindAllString(res.body[start:start+end], -1)
}

func TestRedeemCodesEndToEnd(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOpts{redeemLimit: 5})
	ctx := context.Background()
	admin, user, userID := b.adminAndUser(t)
	snap := b.setSnapshot(t, userID, 1_000_000_000) // the proxy admitted a request earlier

	// Generation: validation, then a batch shown once.
	for _, bad := range []url.Values{
		{"batch": {"x"}, "value": {"0"}, "count": {"1"}, "uses": {"1"}},
		{"batch": {"x"}, "value": {"5"}, "count": {"5000"}, "uses": {"1"}},
		{"batch": {""}, "value": {"5"}, "count": {"1"}, "uses": {"1"}},
		{"batch": {"x"}, "value": {"5"}, "count": {"1"}, "uses": {"1"}, "expires": {"2001-01-01"}},
	} {
		if res := b.postForm(t, admin, "/admin/redeem", bad, nil); res.status != http.StatusUnprocessableEntity {
			t.Errorf("generate %v: status %d", bad, res.status)
		}
	}
	codes := b.generateBatch(t, admin, url.Values{"batch": {"launch"}, "value": {"5"}, "count": {"3"}, "uses": {"1"}, "expires": {"2999-12-31"}})
	if len(codes) != 3 {
		t.Fatalf("page shows %d codes: %q", len(codes), codes)
	}
	list := b.get(t, admin, "/admin/redeem", nil)
	mustContain(t, list.body, "launch", "$5.0000", "0 / 3", "3000-01-01 00:00:00") // the end of the day chosen
	for _, c := range codes {
		mustNotContain(t, list.body, c) // shown once, never again
	}
	var stored int
	if err := b.db.QueryRow(ctx, "SELECT count(*) FROM redeem_codes WHERE batch = 'launch' AND expires_at = '3000-01-01T00:00:00Z'").Scan(&stored); err != nil || stored != 3 {
		t.Fatalf("stored %d codes expiring at the end of the day (%v)", stored, err)
	}

	// Download as text: the codes posted back, one per line.
	dl := b.postForm(t, admin, "/admin/redeem/download", url.Values{"batch": {"launch"}, "codes": {strings.Join(codes, " ")}}, nil)
	if dl.status != http.StatusOK || dl.body != strings.Join(codes, "\n")+"\n" ||
		dl.header.Get("Content-Disposition") != `attachment; filename="tollgate-launch.txt"` {
		t.Fatalf("download: %d %q %q", dl.status, dl.header.Get("Content-Disposition"), dl.body)
	}
	if res := b.postForm(t, admin, "/admin/redeem/download", url.Values{"codes": {"<script>"}}, nil); res.status != http.StatusUnprocessableEntity {
		t.Fatalf("download of junk: %d", res.status)
	}

	// The user redeems one (htmx): the wallet part comes back with the new balance.
	res := b.postForm(t, user, "/wallet/redeem", url.Values{"code": {strings.ToLower(codes[0])}}, htmx)
	if res.status != http.StatusOK || !strings.HasPrefix(res.body, `<div id="wallet"`) {
		t.Fatalf("redeem: status %d\n%s", res.status, res.body)
	}
	mustContain(t, res.body, "Code redeemed: $5.0000 added", `id="balance">$5.0000<`, "redeem:")
	if got := b.balance(t, userID); got != 5_000_000_000 {
		t.Fatalf("balance %d", got)
	}
	b.requireSnapshotDropped(t, snap)

	// Without JavaScript: redirect and flash; refusals re-render the page with the reason.
	res = b.postForm(t, user, "/wallet/redeem", url.Values{"code": {codes[1]}}, nil)
	if res.status != http.StatusSeeOther || res.header.Get("Location") != "/wallet" {
		t.Fatalf("plain redeem: status %d", res.status)
	}
	mustContain(t, b.get(t, user, "/wallet", nil).body, "Code redeemed", "$10.0000")
	for code, want := range map[string]string{
		codes[0]:            "already redeemed this code",
		"TG-2222-2222-2222": "not valid",
		"":                  "Enter the code",
	} {
		res = b.postForm(t, user, "/wallet/redeem", url.Values{"code": {code}}, nil)
		if res.status != http.StatusUnprocessableEntity {
			t.Errorf("redeem %q: status %d", code, res.status)
		}
		mustContain(t, res.body, want, `aria-invalid="true"`)
	}

	// Disabling the batch stops its last code.
	res = b.postForm(t, admin, "/admin/redeem/disable", url.Values{"batch": {"launch"}}, nil)
	if res.status != http.StatusSeeOther {
		t.Fatalf("disable: %d", res.status)
	}
	mustContain(t, b.get(t, admin, "/admin/redeem", nil).body, "disabled", "2 / 3")
	res = b.postForm(t, user, "/wallet/redeem", url.Values{"code": {codes[2]}}, htmx)
	if res.status != http.StatusUnprocessableEntity {
		t.Fatalf("redeem of a disabled code: %d", res.status)
	}
	mustContain(t, res.body, "withdrawn")

	// Five attempts per window (an empty form is not one): the sixth is throttled,
	// whatever the code.
	res = b.postForm(t, user, "/wallet/redeem", url.Values{"code": {codes[2]}}, htmx)
	if res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") == "" {
		t.Fatalf("attempt past the limit: status %d", res.status)
	}
	mustContain(t, res.body, "Too many attempts")

	if got := b.balance(t, userID); got != 10_000_000_000 {
		t.Fatalf("final balance %d", got)
	}
	if got := b.auditActions(t); len(got) != 2 || got[0] != "redeem.generate redeem_batch:launch" || got[1] != "redeem.disable redeem_batch:launch" {
		t.Fatalf("audit %q", got)
	}
}

func TestWalletShowsLedger(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.createUser(t, userEmail, userPassword, "user")
	b.topUp(t, u, 12_500_000_000, "order:1001")
	c := b.signedIn(t, userEmail, userPassword)
	res := b.get(t, c, "/wallet", nil)
	if res.status != http.StatusOK {
		t.Fatalf("status %d", res.status)
	}
	mustContain(t, res.body, `id="balance">$12.5000<`, "topup", "+$12.5000", "order:1001", "test credit", `action="/wallet/redeem"`)
}
