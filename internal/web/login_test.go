package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestLogin(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createUser(t, "ada@example.com", "correct horse battery", "user")
	disabled := b.createUser(t, "bob@example.com", "correct horse battery", "user")
	if _, err := b.db.Exec(context.Background(), "UPDATE users SET status = 'disabled' WHERE id = $1", disabled.ID); err != nil {
		t.Fatal(err)
	}

	t.Run("page", func(t *testing.T) {
		res := b.get(t, b.client(t), "/login", nil)
		if res.status != http.StatusOK {
			t.Fatalf("status %d", res.status)
		}
		mustContain(t, res.body, `<label for="email">Email</label>`, `<label for="password">Password</label>`, `action="/login"`)
	})

	t.Run("success", func(t *testing.T) {
		c := b.signedIn(t, "ADA@example.com ", "correct horse battery") // case and spaces are forgiven
		res := b.get(t, c, "/", nil)
		if res.status != http.StatusOK {
			t.Fatalf("dashboard status %d", res.status)
		}
		mustContain(t, res.body, "ada@example.com", "Sign out")
		// Signed in, the login page sends you home.
		if res := b.get(t, c, "/login", nil); res.status != http.StatusSeeOther {
			t.Errorf("GET /login signed in: status %d", res.status)
		}
	})

	t.Run("wrong password and unknown email read the same", func(t *testing.T) {
		for _, email := range []string{"ada@example.com", "nobody@example.com"} {
			res := b.postForm(t, b.client(t), "/login", url.Values{"email": {email}, "password": {"wrong password!"}}, nil)
			if res.status != http.StatusUnauthorized {
				t.Errorf("%s: status %d", email, res.status)
			}
			mustContain(t, res.body, "Incorrect email or password.", `value="`+email+`"`)
			if res.header.Get("Set-Cookie") != "" && strings.Contains(res.header.Get("Set-Cookie"), "tollgate_session") {
				t.Errorf("%s: a failed login set a session cookie", email)
			}
		}
	})

	t.Run("disabled user cannot sign in", func(t *testing.T) {
		res := b.postForm(t, b.client(t), "/login", url.Values{"email": {"bob@example.com"}, "password": {"correct horse battery"}}, nil)
		if res.status != http.StatusForbidden {
			t.Fatalf("status %d", res.status)
		}
		mustContain(t, res.body, "This account is disabled.")
	})

	t.Run("pages need a session", func(t *testing.T) {
		for _, path := range []string{"/", "/keys", "/usage", "/admin/"} {
			res := b.get(t, b.client(t), path, nil)
			if res.status != http.StatusSeeOther || res.header.Get("Location") != "/login" {
				t.Errorf("GET %s: status %d location %q", path, res.status, res.header.Get("Location"))
			}
		}
		res := b.get(t, b.client(t), "/keys", htmx)
		if res.status != http.StatusUnauthorized || res.header.Get("HX-Redirect") != "/login" {
			t.Errorf("htmx GET /keys: status %d HX-Redirect %q", res.status, res.header.Get("HX-Redirect"))
		}
	})
}

func TestLoginDisablingEndsSessions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.createUser(t, "ada@example.com", "correct horse battery", "user")
	c := b.signedIn(t, "ada@example.com", "correct horse battery")
	if _, err := b.db.Exec(context.Background(), "UPDATE users SET status = 'disabled' WHERE id = $1", u.ID); err != nil {
		t.Fatal(err)
	}
	if res := b.get(t, c, "/", nil); res.status != http.StatusSeeOther || res.header.Get("Location") != "/login" {
		t.Fatalf("disabled user's session still works: status %d", res.status)
	}
}

func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createUser(t, "ada@example.com", "correct horse battery", "user")
	c := b.client(t)
	for i := range 10 {
		res := b.postForm(t, c, "/login", url.Values{"email": {"ada@example.com"}, "password": {"guess"}}, nil)
		if res.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: status %d", i+1, res.status)
		}
	}
	// The 11th attempt in the window is refused, even with the right password.
	res := b.postForm(t, c, "/login", url.Values{"email": {"ada@example.com"}, "password": {"correct horse battery"}}, nil)
	if res.status != http.StatusTooManyRequests {
		t.Fatalf("11th attempt: status %d", res.status)
	}
	mustContain(t, res.body, "Too many sign-in attempts.")
	if res.header.Get("Retry-After") == "" {
		t.Error("no Retry-After header")
	}
	// The counters are Redis keys under the configured prefix.
	keys, err := b.rdb.Keys(context.Background(), b.prefix+"rl:login:*").Result()
	if err != nil || len(keys) != 2 {
		t.Errorf("rate limit keys under %q: %v, %v", b.prefix, keys, err)
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createUser(t, "ada@example.com", "correct horse battery", "user")
	c := b.signedIn(t, "ada@example.com", "correct horse battery")
	u, _ := url.Parse(b.url)
	old := c.Jar.Cookies(u)

	res := b.postForm(t, c, "/logout", nil, nil)
	if res.status != http.StatusSeeOther || res.header.Get("Location") != "/login" {
		t.Fatalf("logout: status %d location %q", res.status, res.header.Get("Location"))
	}
	res = b.get(t, c, "/login", nil)
	mustContain(t, res.body, "You have signed out.")
	if res := b.get(t, c, "/", nil); res.status != http.StatusSeeOther {
		t.Errorf("after logout GET /: status %d", res.status)
	}

	// The old session token is dead on the server, not just forgotten by the browser.
	stale := b.client(t)
	stale.Jar.SetCookies(u, old)
	if res := b.get(t, stale, "/", nil); res.status != http.StatusSeeOther {
		t.Errorf("old session cookie still signs in: status %d", res.status)
	}
}
