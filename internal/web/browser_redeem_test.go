package web_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserRedeemCode: an admin generates a batch of codes in a real browser, then a
// user signs in and redeems one on the wallet page (htmx) and sees the credit.
func TestBrowserRedeemCode(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createUser(t, adminEmail, adminPassword, "admin")
	u := b.createUser(t, userEmail, userPassword, "user")
	b.topUp(t, u, 1_500_000_000, "order:7")
	ctx := newBrowser(t)

	signIn := func(email, password string) {
		t.Helper()
		err := chromedp.Do(ctx,
			chromedp.Navigate(b.url+"/login"),
			chromedp.WaitVisible(chromedp.ID("email")),
			chromedp.SendKeys(chromedp.ID("email"), email),
			chromedp.SendKeys(chromedp.ID("password"), password),
			chromedp.Submit(chromedp.ID("password")),
			chromedp.WaitVisible(chromedp.ID("balance")),
		)
		if err != nil {
			t.Fatalf("sign in as %s: %v", email, err)
		}
	}

	signIn(adminEmail, adminPassword)
	err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`nav a[href="/admin"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.subnav a[href="/admin/redeem"]`)),
		chromedp.Click(chromedp.CSS(`.subnav a[href="/admin/redeem"]`)),
		chromedp.WaitVisible(chromedp.ID("batch")),
		chromedp.SendKeys(chromedp.ID("batch"), "browser-promo"),
		chromedp.SendKeys(chromedp.ID("value"), "5"),
		chromedp.SetValue(chromedp.ID("count"), "2"),
		chromedp.Click(chromedp.CSS(`#redeem-generate button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("new-codes")),
	)
	if err != nil {
		t.Fatalf("generate codes: %v", err)
	}
	screenshot(t, ctx, "-redeem-admin")
	text, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("new-codes")))
	if err != nil {
		t.Fatal(err)
	}
	codes := codeRE.FindAllString(text, -1)
	if len(codes) != 2 {
		t.Fatalf("codes shown %q", text)
	}

	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`.account button[type="submit"]`)), // sign out
		chromedp.WaitVisible(chromedp.ID("email")),
	)
	if err != nil {
		t.Fatalf("sign out: %v", err)
	}
	signIn(userEmail, userPassword)
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`nav a[href="/wallet"]`)),
		chromedp.WaitVisible(chromedp.ID("code")),
		chromedp.SendKeys(chromedp.ID("code"), codes[0]),
		chromedp.Click(chromedp.CSS(`#redeem-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("redeem-success")),
	)
	if err != nil {
		t.Fatalf("redeem: %v", err)
	}
	screenshot(t, ctx, "-wallet")
	if balance, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("balance"))); err != nil || balance != "$6.5000" {
		t.Errorf("balance after redeeming %q (%v), want $6.5000", balance, err)
	}
	ledger, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".ledger-table tbody")))
	if err != nil || !strings.Contains(ledger, "redeem") || !strings.Contains(ledger, "+$5.0000") || !strings.Contains(ledger, "Redeem code "+codes[0][:7]) {
		t.Errorf("ledger shows %q (%v)", ledger, err)
	}

	// The same code again is refused in place, and the balance stays.
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("code"), codes[0]),
		chromedp.Click(chromedp.CSS(`#redeem-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("code-error")),
	)
	if err != nil {
		t.Fatalf("second redeem: %v", err)
	}
	if msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("code-error"))); err != nil || !strings.Contains(msg, "already redeemed") {
		t.Errorf("second redeem says %q (%v)", msg, err)
	}
	if got := b.balance(t, u.ID); got != 6_500_000_000 {
		t.Errorf("stored balance %d", got)
	}
}
