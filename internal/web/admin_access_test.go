package web_test

import (
	"net/http"
	"net/url"
	"testing"
)

// adminRoutes are every page and action of the console.
var adminRoutes = []struct{ method, path string }{
	{"GET", "/admin"},
	{"GET", "/admin/users"},
	{"GET", "/admin/users/1"},
	{"POST", "/admin/users/1/adjust"},
	{"GET", "/admin/groups"},
	{"POST", "/admin/groups"},
	{"GET", "/admin/groups/1"},
	{"POST", "/admin/groups/1"},
	{"GET", "/admin/prices"},
	{"POST", "/admin/prices"},
	{"GET", "/admin/prices/new"},
	{"GET", "/admin/prices/1"},
	{"POST", "/admin/prices/1"},
	{"GET", "/admin/redeem"},
	{"POST", "/admin/redeem"},
	{"POST", "/admin/redeem/download"},
	{"POST", "/admin/redeem/disable"},
}

func TestAdminConsoleIsAdminOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	admin, user, _ := b.adminAndUser(t)
	anonymous := b.client(t)
	form := url.Values{"name": {"sneaky"}, "amount": {"100"}, "note": {"x"}, "batch": {"b"}, "value": {"1"}, "count": {"1"}, "uses": {"1"}}
	for _, rt := range adminRoutes {
		send := func(c *http.Client, header http.Header) response {
			if rt.method == "GET" {
				return b.get(t, c, rt.path, header)
			}
			return b.postForm(t, c, rt.path, form, header)
		}
		if res := send(anonymous, nil); res.status != http.StatusSeeOther || res.header.Get("Location") != "/login" {
			t.Errorf("anonymous %s %s: %d %s", rt.method, rt.path, res.status, res.header.Get("Location"))
		}
		// Users get the plain 404 of a page that does not exist.
		if res := send(user, nil); res.status != http.StatusNotFound {
			t.Errorf("user %s %s: %d", rt.method, rt.path, res.status)
		}
		// Cross-origin posts are refused before any handler, even for an admin.
		if rt.method == "POST" {
			res := send(admin, http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}})
			if res.status != http.StatusForbidden {
				t.Errorf("cross-origin %s: %d", rt.path, res.status)
			}
		}
	}
	if actions := b.auditActions(t); len(actions) != 0 {
		t.Fatalf("refused requests changed something: %q", actions)
	}
	for _, path := range []string{"/admin", "/admin/users", "/admin/groups", "/admin/prices", "/admin/prices/new", "/admin/redeem"} {
		if res := b.get(t, admin, path, nil); res.status != http.StatusOK {
			t.Errorf("admin GET %s: %d", path, res.status)
		}
	}
	// The user's own wallet is open to them, and to nobody signed out.
	if res := b.get(t, user, "/wallet", nil); res.status != http.StatusOK {
		t.Errorf("user GET /wallet: %d", res.status)
	}
	if res := b.postForm(t, anonymous, "/wallet/redeem", url.Values{"code": {"TG-2222-2222-2222"}}, nil); res.status != http.StatusSeeOther {
		t.Errorf("anonymous redeem: %d", res.status)
	}
}
