package web_test

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium; CI installs it. A missing browser fails the test
// rather than skipping it, so page coverage cannot silently disappear.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("/usr/bin/chromium"); err == nil {
		return p
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Fatal("Chromium is not installed: the page tests drive a real browser. Install it with `apt-get install chromium` (Debian) and run the tests again.")
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile and returns a tab.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(ctx)
	t.Cleanup(cancelTab)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// TestBrowserKeyLifecycle signs in, checks the balance, creates a key (its secret shown
// once) and revokes it, in a real browser with htmx doing the swaps.
func TestBrowserKeyLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.createUser(t, "ada@example.com", "correct horse battery", "user")
	b.topUp(t, u, 12_500_000_000, "order:1001")
	f := b.usageFixture(t, u)
	now := time.Now()
	b.insertUsage(t, u, f,
		usageEvent{requestID: "req_1", at: now.Add(-3 * time.Minute), model: "claude-sonnet-4-5", in: 1834, out: 412, cacheW: 1024, cacheR: 20480, billed: 21_640_000, status: 200},
		usageEvent{requestID: "req_2", at: now.Add(-9 * time.Minute), model: "claude-haiku-4-5", in: 220, out: 96, billed: 700_000, status: 200},
		usageEvent{requestID: "req_3", at: now.Add(-14 * time.Minute), model: "claude-opus-4-1", in: 5120, out: 0, billed: 0, status: 529},
	)
	ctx := newBrowser(t)

	err := chromedp.Do(ctx,
		chromedp.Navigate(b.url+"/"),
		chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), "ada@example.com"),
		chromedp.SendKeys(chromedp.ID("password"), "correct horse battery"),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.ID("balance")),
	)
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if balance, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("balance"))); err != nil || balance != "$12.5000" {
		t.Errorf("dashboard balance %q (%v), want $12.5000", balance, err)
	}
	screenshot(t, ctx, "")

	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`nav a[href="/keys"]`)),
		chromedp.WaitVisible(chromedp.ID("key-name")),
		chromedp.SendKeys(chromedp.ID("key-name"), "browser"),
		chromedp.Click(chromedp.CSS(`#key-create button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("new-key-secret")),
	)
	if err != nil {
		t.Fatalf("create key: %v", err)
	}
	screenshot(t, ctx, "-keys")
	secret, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("new-key-secret")))
	if err != nil || !secretRE.MatchString(secret) || len(secret) != 46 {
		t.Fatalf("secret shown %q (%v)", secret, err)
	}
	keys, err := b.q.APIKeyListByUser(context.Background(), b.db, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	var newID int64
	for _, k := range keys {
		if k.Name == "browser" {
			newID = k.ID
		}
	}
	if newID == 0 {
		t.Fatal("the created key is not stored")
	}
	row := "#key-" + strconv.FormatInt(newID, 10)

	err = chromedp.Do(ctx,
		// htmx put the new row in the table without a reload.
		chromedp.WaitVisible(chromedp.CSS(row)),
		chromedp.Click(chromedp.CSS(row+" summary")),
		chromedp.WaitVisible(chromedp.CSS(row+" .confirm-box button")),
		chromedp.Click(chromedp.CSS(row+" .confirm-box button")),
		chromedp.WaitNotPresent(chromedp.CSS(row+" details")),
	)
	if err != nil {
		t.Fatalf("revoke key: %v", err)
	}
	if status, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(row+" .badge"))); err != nil || status != "revoked" {
		t.Errorf("row status after revoke %q (%v)", status, err)
	}
	// Shown once: a fresh load of the page has no secret.
	err = chromedp.Do(ctx, chromedp.Navigate(b.url+"/keys"), chromedp.WaitVisible(chromedp.CSS(row)))
	if err != nil {
		t.Fatal(err)
	}
	page, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(page, secret) {
		t.Error("the secret is shown again after a reload")
	}
	k, err := b.q.APIKeyGetForUser(context.Background(), b.db, sqlcKeyParams(newID, u.ID))
	if err != nil || k.Status != "revoked" {
		t.Errorf("stored key: %s, %v", k.Status, err)
	}
}

// screenshot saves the page when WEB_SCREENSHOT names a PNG file (suffix goes before
// ".png"), for a person to look at the pages; tests never compare pixels.
func screenshot(t *testing.T, ctx context.Context, suffix string) {
	t.Helper()
	path := os.Getenv("WEB_SCREENSHOT")
	if path == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(strings.TrimSuffix(path, ".png")+suffix+".png", png, 0o644); err != nil {
		t.Fatal(err)
	}
}
