package web_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/apikey"
	"github.com/tollgate/tollgate/internal/db/sqlc"
)

func TestGroupSave(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	admin, _, userID := b.adminAndUser(t)
	if _, err := b.q.FxRateInsert(ctx, b.db, sqlc.FxRateInsertParams{RateMicro: 7_200_000, Source: "fx.test", FetchedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	poolA, err := b.q.PoolInsert(ctx, b.db, sqlc.PoolInsertParams{Name: "claude-max"})
	if err != nil {
		t.Fatal(err)
	}
	poolB, err := b.q.PoolInsert(ctx, b.db, sqlc.PoolInsertParams{Name: "openai-api"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.q.GroupPoolAttach(ctx, b.db, sqlc.GroupPoolAttachParams{GroupID: b.group.ID, PoolID: poolB.ID}); err != nil {
		t.Fatal(err)
	}
	// Another group's member whose key is narrowed to this group is affected too.
	other, err := b.q.GroupInsert(ctx, b.db, sqlc.GroupInsertParams{Name: "vip"})
	if err != nil {
		t.Fatal(err)
	}
	outsider, err := b.q.UserInsert(ctx, b.db, sqlc.UserInsertParams{Email: "bo@example.com", PasswordHash: "x", Role: "user", GroupID: other.ID})
	if err != nil {
		t.Fatal(err)
	}
	gen := apikey.Generate()
	if _, err := b.q.APIKeyInsert(ctx, b.db, sqlc.APIKeyInsertParams{UserID: outsider.ID, Name: "k", DisplayPrefix: gen.DisplayPrefix, Hash: gen.Hash, GroupID: &b.group.ID}); err != nil {
		t.Fatal(err)
	}
	events := b.listen(t)
	path := "/admin/groups/" + strconv.FormatInt(b.group.ID, 10)

	page := b.get(t, admin, path, nil)
	mustContain(t, page.body, `name="multiplier_anthropic"`, `value="1"`, "¥7.2000")

	// Validation refuses the whole form.
	res := b.postForm(t, admin, path, url.Values{
		"default_concurrency": {"-1"}, "multiplier_anthropic": {"0"}, "peg_openai": {"two"}, "multiplier_gemini": {"1.5"},
	}, nil)
	if res.status != http.StatusUnprocessableEntity {
		t.Fatalf("invalid form: status %d", res.status)
	}
	mustContain(t, res.body, "Enter a whole number", "Enter a multiplier above 0", "Enter yuan per official dollar", `value="two"`)

	// The worked example: peg ¥2 at ¥7.20 with multiplier 1 is factor 0.2778, so
	// an official $0.10 bills $0.0278; openai at 1.5×; gemini pegged at 1.5×.
	res = b.postForm(t, admin, path, url.Values{
		"description": {"Everyone"}, "default_concurrency": {"4"},
		"multiplier_anthropic": {"1"}, "peg_anthropic": {"2.00"},
		"multiplier_openai": {"1.5"}, "peg_openai": {""},
		"multiplier_gemini": {"1.5"}, "peg_gemini": {"2"},
		"pool": {strconv.FormatInt(poolA.ID, 10)},
	}, nil)
	if res.status != http.StatusSeeOther {
		t.Fatalf("save: status %d\n%s", res.status, res.body)
	}
	factors, err := b.q.GroupPriceFactorListByGroup(ctx, b.db, b.group.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range factors {
		peg := "none"
		if f.PegRmbMicro != nil {
			peg = strconv.FormatInt(*f.PegRmbMicro, 10)
		}
		got = append(got, f.Provider+" "+strconv.FormatInt(f.MultiplierPpm, 10)+" "+peg)
	}
	want := []string{"anthropic 1000000 2000000", "gemini 1500000 2000000", "openai 1500000 none"}
	if !slices.Equal(got, want) {
		t.Fatalf("factors %q, want %q", got, want)
	}
	g, err := b.q.GroupGetByID(ctx, b.db, b.group.ID)
	if err != nil || g.DefaultConcurrency != 4 || g.Description != "Everyone" {
		t.Fatalf("group %+v, %v", g, err)
	}
	pools, err := b.q.GroupPoolChoices(ctx, b.db, b.group.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pools {
		if p.Attached != (p.ID == poolA.ID) {
			t.Errorf("pool %s attached %v", p.Name, p.Attached)
		}
	}

	// Proxies reload prices (factors) and accounts (pools) and drop the affected users' keys.
	adminUser, err := b.q.UserGetByEmail(ctx, b.db, adminEmail)
	if err != nil {
		t.Fatal(err)
	}
	msgs := events.next(t, 5)
	slices.Sort(msgs)
	wantMsgs := []string{"accounts:", "prices:", "user:" + strconv.FormatInt(userID, 10),
		"user:" + strconv.FormatInt(adminUser.ID, 10), "user:" + strconv.FormatInt(outsider.ID, 10)}
	slices.Sort(wantMsgs)
	if !slices.Equal(msgs, wantMsgs) {
		t.Fatalf("published %q, want %q", msgs, wantMsgs)
	}

	page = b.get(t, admin, path, nil)
	mustContain(t, page.body, "saved", `id="factor-anthropic"><strong>0.2778</strong>`, "$1.00 official bills $0.2778",
		`id="factor-openai"><strong>1.5000</strong>`, `id="factor-gemini"><strong>0.4167</strong>`)
	list := b.get(t, admin, "/admin/groups", nil)
	mustContain(t, list.body, "claude-max", "× 0.2778", "× 1.5000")
	if !strings.Contains(b.auditActions(t)[0], "group.update group:"+strconv.FormatInt(b.group.ID, 10)) {
		t.Errorf("audit %q", b.auditActions(t))
	}
	if d := b.auditDetail(t, "group.update"); d["factors_before"] == nil {
		t.Errorf("audit detail without the factors before: %v", d)
	}
}

func TestGroupCreate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	admin, _, _ := b.adminAndUser(t)
	res := b.postForm(t, admin, "/admin/groups", url.Values{"name": {"default"}}, nil)
	if res.status != http.StatusUnprocessableEntity || !strings.Contains(res.body, "exists already") {
		t.Fatalf("duplicate name: status %d", res.status)
	}
	res = b.postForm(t, admin, "/admin/groups", url.Values{"name": {"  "}}, nil)
	if res.status != http.StatusUnprocessableEntity {
		t.Fatalf("empty name: status %d", res.status)
	}
	res = b.postForm(t, admin, "/admin/groups", url.Values{"name": {"resellers"}}, nil)
	if res.status != http.StatusSeeOther || !strings.HasPrefix(res.header.Get("Location"), "/admin/groups/") {
		t.Fatalf("create: status %d, location %q", res.status, res.header.Get("Location"))
	}
	mustContain(t, b.get(t, admin, res.header.Get("Location"), nil).body, "resellers", "No USD/CNY rate yet", "$1.00 official bills $1.0000")
}
