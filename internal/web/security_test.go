package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/static"
)

func TestCrossOriginRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createUser(t, "ada@example.com", "correct horse battery", "user")
	c := b.signedIn(t, "ada@example.com", "correct horse battery")

	for _, tc := range []struct {
		name   string
		header http.Header
	}{
		{"Sec-Fetch-Site cross-site", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}},
		{"Origin only", http.Header{"Sec-Fetch-Site": nil, "Origin": {"https://evil.example"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/keys", "/logout", "/login"} {
				res := b.postForm(t, c, path, url.Values{"name": {"stolen"}, "email": {"ada@example.com"}, "password": {"correct horse battery"}}, tc.header)
				if res.status != http.StatusForbidden {
					t.Errorf("POST %s: status %d", path, res.status)
				}
				mustContain(t, res.body, "Request refused")
			}
		})
	}
	// Nothing happened: no key, still signed in.
	res := b.get(t, c, "/keys", nil)
	if res.status != http.StatusOK {
		t.Fatalf("GET /keys after refused requests: status %d", res.status)
	}
	mustNotContain(t, res.body, "stolen")
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.get(t, b.client(t), "/login", nil)
	for name, want := range map[string]string{
		"Content-Security-Policy": "default-src 'self'",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "same-origin",
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "no-store",
	} {
		if got := res.header.Get(name); !strings.Contains(got, want) {
			t.Errorf("%s = %q, want it to contain %q", name, got, want)
		}
	}
	if csp := res.header.Get("Content-Security-Policy"); strings.Contains(csp, "unsafe") {
		t.Errorf("CSP allows unsafe sources: %s", csp)
	}
	// The page itself carries no inline script or style the CSP would block.
	mustNotContain(t, res.body, "<script>", "<style", " style=", " onclick=")

	// The session cookie is HttpOnly and SameSite=Lax.
	b.createUser(t, "ada@example.com", "correct horse battery", "user")
	login := b.postForm(t, b.client(t), "/login", url.Values{"email": {"ada@example.com"}, "password": {"correct horse battery"}}, nil)
	cookie := login.header.Get("Set-Cookie")
	if !strings.Contains(cookie, "HttpOnly") || !strings.Contains(cookie, "SameSite=Lax") {
		t.Errorf("session cookie %q", cookie)
	}
}

func TestStaticAssets(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.client(t)
	for _, name := range []string{"app.css", "app.js", "htmx.min.js", "favicon.svg"} {
		res := b.get(t, c, static.URL(name), nil)
		if res.status != http.StatusOK || res.body == "" {
			t.Errorf("%s: status %d, %d bytes", name, res.status, len(res.body))
		}
		if got := res.header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
			t.Errorf("%s: Cache-Control %q", name, got)
		}
	}
	if ct := b.get(t, c, static.URL("app.css"), nil).header.Get("Content-Type"); !strings.HasPrefix(ct, "text/css") {
		t.Errorf("app.css Content-Type %q", ct)
	}
	for _, path := range []string{"/static/app.000000000000.css", "/static/app.css", "/static/nope.0123456789ab.js"} {
		if res := b.get(t, c, path, nil); res.status != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, res.status)
		}
	}
	// Pages link the hashed names.
	mustContain(t, b.get(t, c, "/login", nil).body, static.URL("app.css"), static.URL("htmx.min.js"))
}

func TestNotFoundPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.get(t, b.client(t), "/no/such/page", nil)
	if res.status != http.StatusNotFound {
		t.Fatalf("status %d", res.status)
	}
	mustContain(t, res.body, "Page not found")
}
