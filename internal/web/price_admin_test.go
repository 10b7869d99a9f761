package web_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/db/sqlc"
)

// priceForm is a complete price form in dollars per million tokens.
func priceForm(extra url.Values) url.Values {
	f := url.Values{"input": {"3"}, "output": {"15"}, "cache_write_5m": {"3.75"}, "cache_write_1h": {"6"}, "cache_read": {"0.30"}}
	for k, v := range extra {
		f[k] = v
	}
	return f
}

func TestPriceCatalogue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	admin, _, _ := b.adminAndUser(t)
	old := time.Now().Add(-48 * time.Hour)
	for _, p := range []sqlc.PriceInsertParams{
		{Provider: "anthropic", Pattern: "claude-sonnet-4-5", Match: "exact", EffectiveFrom: old,
			InputPico: 3_000_000, OutputPico: 15_000_000, CacheWrite5mPico: 3_750_000, CacheWrite1hPico: 6_000_000, CacheReadPico: 300_000, Note: "list price"},
		{Provider: "openai", Pattern: "gpt-5-mini", Match: "exact", EffectiveFrom: old,
			InputPico: 250_000, OutputPico: 2_000_000, CacheWrite5mPico: 250_000, CacheWrite1hPico: 250_000, CacheReadPico: 25_000},
	} {
		if _, err := b.q.PriceInsert(ctx, b.db, p); err != nil {
			t.Fatal(err)
		}
	}

	res := b.get(t, admin, "/admin/prices", nil)
	mustContain(t, res.body, "claude-sonnet-4-5", "gpt-5-mini", "$3.00", "$15.00", "$3.75", "$0.30", "$0.025", "list price")

	// The filter box: htmx gets the table body alone, a plain GET the whole page.
	res = b.get(t, admin, "/admin/prices?q=GPT", htmx)
	if !strings.HasPrefix(res.body, `<tbody id="price-rows">`) {
		t.Fatalf("htmx filter answered a full page:\n%.200s", res.body)
	}
	mustContain(t, res.body, "gpt-5-mini")
	mustNotContain(t, res.body, "claude-sonnet-4-5")
	mustContain(t, b.get(t, admin, "/admin/prices?q=nothing-like-this", nil).body, "<html", "No price matches")
}

func TestPriceEditKeepsHistory(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	admin, _, _ := b.adminAndUser(t)
	events := b.listen(t)
	orig, err := b.q.PriceInsert(ctx, b.db, sqlc.PriceInsertParams{
		Provider: "anthropic", Pattern: "claude-sonnet-4-5", Match: "exact", EffectiveFrom: time.Now().Add(-time.Hour),
		InputPico: 3_000_000, OutputPico: 15_000_000, CacheWrite5mPico: 3_750_000, CacheWrite1hPico: 6_000_000, CacheReadPico: 300_000,
	})
	if err != nil {
		t.Fatal(err)
	}
	path := "/admin/prices/" + strconv.FormatInt(orig.ID, 10)
	mustContain(t, b.get(t, admin, path, nil).body, `value="3.00"`, `value="0.30"`, "in force")

	// Validation: nothing is stored.
	res := b.postForm(t, admin, path, priceForm(url.Values{"input": {"3.1234567"}, "output": {"abc"}, "cache_read": {""}}), nil)
	if res.status != http.StatusUnprocessableEntity {
		t.Fatalf("invalid edit: status %d", res.status)
	}
	mustContain(t, res.body, "at most six decimals", "Enter a price (0 is allowed)", `value="3.1234567"`)

	start := time.Now()
	res = b.postForm(t, admin, path, priceForm(url.Values{"input": {"2.5"}, "output": {"12.50"}, "cache_read": {"0.075"}, "note": {"promo"}}), nil)
	if res.status != http.StatusSeeOther {
		t.Fatalf("edit: status %d\n%s", res.status, res.body)
	}
	history, err := b.q.PriceHistory(ctx, b.db, sqlc.PriceHistoryParams{Provider: "anthropic", Pattern: "claude-sonnet-4-5", Match: "exact"})
	if err != nil {
		t.Fatal(err)
	}
	if len(history) != 2 || history[1].ID != orig.ID || history[1].InputPico != 3_000_000 {
		t.Fatalf("history %+v: the old row must stay as it was", history)
	}
	edited := history[0]
	if edited.InputPico != 2_500_000 || edited.OutputPico != 12_500_000 || edited.CacheReadPico != 75_000 || edited.Note != "promo" ||
		edited.EffectiveFrom.Before(start.Add(-time.Second)) || edited.EffectiveFrom.After(time.Now()) {
		t.Fatalf("new row %+v, want the new prices from now", edited)
	}
	if loc := res.header.Get("Location"); loc != "/admin/prices/"+strconv.FormatInt(edited.ID, 10) {
		t.Fatalf("redirect to %s", loc)
	}
	if got := events.next(t, 1); !slices.Equal(got, []string{"prices:"}) {
		t.Fatalf("published %q", got)
	}
	page := b.get(t, admin, res.header.Get("Location"), nil)
	mustContain(t, page.body, "New price saved", "$2.50", "$3.00", "promo")
	if n := len(regexp.MustCompile(`class="history-row"`).FindAllString(page.body, -1)); n != 2 {
		t.Errorf("history shows %d rows, want 2", n)
	}
	d := b.auditDetail(t, "price.update")
	if d["input_pico"] != float64(2_500_000) || d["previous_price_id"] != float64(orig.ID) {
		t.Errorf("audit detail %v", d)
	}
}

func TestPriceCreate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	admin, _, _ := b.adminAndUser(t)
	events := b.listen(t)
	mustContain(t, b.get(t, admin, "/admin/prices/new", nil).body, "empty pattern is your fallback")

	for _, tc := range []struct {
		name  string
		form  url.Values
		error string
	}{
		{"exact without a model", url.Values{"provider": {"openai"}, "match": {"exact"}, "pattern": {""}}, "Enter the model name"},
		{"spaces", url.Values{"provider": {"openai"}, "match": {"exact"}, "pattern": {"gpt 5"}}, "no spaces"},
		{"unknown provider", url.Values{"provider": {"mistral"}, "match": {"exact"}, "pattern": {"m"}}, "Choose a provider"},
		{"tier prices without threshold", url.Values{"provider": {"openai"}, "match": {"exact"}, "pattern": {"m"}, "input_above": {"6"}}, "Set the threshold"},
	} {
		res := b.postForm(t, admin, "/admin/prices", priceForm(tc.form), nil)
		if res.status != http.StatusUnprocessableEntity || !strings.Contains(res.body, tc.error) {
			t.Errorf("%s: status %d, want 422 with %q", tc.name, res.status, tc.error)
		}
	}

	// The operator's fallback: a prefix rule with an empty pattern.
	res := b.postForm(t, admin, "/admin/prices", priceForm(url.Values{"provider": {"openai"}, "match": {"prefix"}, "pattern": {""}}), nil)
	if res.status != http.StatusSeeOther {
		t.Fatalf("fallback rule: status %d\n%s", res.status, res.body)
	}
	// A long-context tier.
	res = b.postForm(t, admin, "/admin/prices", priceForm(url.Values{
		"provider": {"gemini"}, "match": {"exact"}, "pattern": {"gemini-2.5-pro"}, "tier_threshold": {"200000"}, "input_above": {"2.50"},
	}), nil)
	if res.status != http.StatusSeeOther {
		t.Fatalf("tiered rule: status %d\n%s", res.status, res.body)
	}
	rows, err := b.q.PriceList(ctx, b.db)
	if err != nil || len(rows) != 2 {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
	fallback, tiered := rows[1], rows[0]
	if fallback.Provider != "openai" || fallback.Match != "prefix" || fallback.Pattern != "" || fallback.InputPico != 3_000_000 {
		t.Errorf("fallback row %+v", fallback)
	}
	if tiered.TierThreshold == nil || *tiered.TierThreshold != 200_000 || tiered.InputAbovePico == nil || *tiered.InputAbovePico != 2_500_000 || tiered.OutputAbovePico != nil {
		t.Errorf("tiered row %+v", tiered)
	}
	if got := events.next(t, 2); !slices.Equal(got, []string{"prices:", "prices:"}) {
		t.Fatalf("published %q", got)
	}
	mustContain(t, b.get(t, admin, "/admin/prices", nil).body, "fallback", "every other openai model")

	// The same rule again is refused: a new price goes through its page.
	res = b.postForm(t, admin, "/admin/prices", priceForm(url.Values{"provider": {"openai"}, "match": {"prefix"}, "pattern": {""}}), nil)
	if res.status != http.StatusUnprocessableEntity || !strings.Contains(res.body, "has a price already") {
		t.Fatalf("duplicate rule: status %d", res.status)
	}
	if got := b.auditActions(t); len(got) != 2 || !strings.HasPrefix(got[0], "price.create price:") {
		t.Fatalf("audit %q", got)
	}
}
