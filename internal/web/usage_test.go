package web_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestUsagePages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.createUser(t, "ada@example.com", "correct horse battery", "user")
	f := b.usageFixture(t, u)
	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	var events []usageEvent
	for i := range 60 { // event i is i seconds after start; the newest is model-59
		events = append(events, usageEvent{
			requestID: fmt.Sprintf("req_%02d", i), at: start.Add(time.Duration(i) * time.Second),
			model: fmt.Sprintf("model-%02d", i), in: 1, out: 1, billed: 1000, status: 200,
		})
	}
	b.insertUsage(t, u, f, events...)
	c := b.signedIn(t, "ada@example.com", "correct horse battery")

	first := b.get(t, c, "/usage", nil)
	if first.status != http.StatusOK {
		t.Fatalf("status %d", first.status)
	}
	mustContain(t, first.body, "model-59", "model-10", "Load more")
	mustNotContain(t, first.body, "model-09")
	more := regexp.MustCompile(`hx-get="(/usage\?before=[0-9]+-[0-9]+)"`).FindStringSubmatch(first.body)
	if more == nil {
		t.Fatal("no load-more link")
	}

	// htmx gets the next rows to append, and no further link at the end.
	next := b.get(t, c, more[1], htmx)
	if next.status != http.StatusOK {
		t.Fatalf("more: status %d", next.status)
	}
	mustNotContain(t, next.body, "<html", "model-10", "Load more")
	if n := strings.Count(next.body, "<tr>"); n != 10 {
		t.Errorf("more: %d rows, want 10", n)
	}
	mustContain(t, next.body, "model-09", "model-00", `hx-swap-oob="beforeend:#usage-rows"`)

	// Without JavaScript the link is a page of its own.
	page := b.get(t, c, more[1], nil)
	mustContain(t, page.body, "<html", "model-00")
}

func TestAdminHome(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createUser(t, "root@example.com", "correct horse battery", "admin")
	b.createUser(t, "ada@example.com", "correct horse battery", "user")

	user := b.signedIn(t, "ada@example.com", "correct horse battery")
	if res := b.get(t, user, "/admin/", nil); res.status != http.StatusNotFound {
		t.Errorf("user GET /admin/: status %d", res.status)
	}
	mustNotContain(t, b.get(t, user, "/", nil).body, `href="/admin"`)

	admin := b.signedIn(t, "root@example.com", "correct horse battery")
	res := b.get(t, admin, "/admin", nil)
	if res.status != http.StatusOK {
		t.Fatalf("admin GET /admin/: status %d", res.status)
	}
	mustContain(t, res.body, "Users", ">2<")
	mustContain(t, b.get(t, admin, "/", nil).body, `href="/admin"`)
}
