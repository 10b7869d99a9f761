package web_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/apikey"
	"github.com/tollgate/tollgate/internal/auth"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/testenv"
	"github.com/tollgate/tollgate/internal/web"
)

const testProxyURL = "https://proxy.tollgate.test"

// testBundle is one running web app on a fresh database and Redis namespace.
type testBundle struct {
	db     *pgxpool.Pool
	rdb    *redis.Client
	prefix string
	group  sqlc.Group
	url    string // the app's base URL
	q      *sqlc.Queries
}

type setupOpts struct {
	db          *pgxpool.Pool         // instead of a fresh test database
	redis       redis.UniversalClient // instead of the test Redis
	redeemLimit int64                 // redeem attempts per window; 0: the default
}

func setup(t *testing.T) *testBundle { return setupWith(t, setupOpts{}) }

func setupWith(t *testing.T, o setupOpts) *testBundle {
	t.Helper()
	b := &testBundle{q: sqlc.New()}
	b.rdb, b.prefix = testenv.Redis(t)
	if o.db == nil {
		b.db = testenv.DB(t)
		g, err := b.q.GroupInsert(context.Background(), b.db, sqlc.GroupInsertParams{Name: "default", IsDefault: true})
		if err != nil {
			t.Fatalf("insert group: %v", err)
		}
		b.group = g
	} else {
		b.db = o.db
	}
	var rdb redis.UniversalClient = b.rdb
	if o.redis != nil {
		rdb = o.redis
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.url = "http://" + ln.Addr().String()
	app, err := web.New(web.Config{
		BaseURL:        b.url,
		ProxyPublicURL: testProxyURL,
		RedisPrefix:    b.prefix,
		Logger:         slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		DB:             b.db,
		Redis:          rdb,
		RedeemLimit:    o.redeemLimit,
	})
	if err != nil {
		t.Fatalf("web.New: %v", err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: app}}
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		app.Close()
	})
	return b
}

// createUser inserts an active user with the password.
func (b *testBundle) createUser(t *testing.T, email, password, role string) sqlc.User {
	t.Helper()
	hash, err := auth.HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	u, err := b.q.UserInsert(context.Background(), b.db, sqlc.UserInsertParams{
		Email: email, PasswordHash: hash, Role: role, GroupID: b.group.ID,
	})
	if err != nil {
		t.Fatalf("insert user: %v", err)
	}
	return u
}

// client is a browser-like client: it keeps cookies and does not follow redirects, so
// tests see them.
func (b *testBundle) client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// signedIn returns a client with a session for the user.
func (b *testBundle) signedIn(t *testing.T, email, password string) *http.Client {
	t.Helper()
	c := b.client(t)
	res := b.postForm(t, c, "/login", url.Values{"email": {email}, "password": {password}}, nil)
	if res.status != http.StatusSeeOther || res.header.Get("Location") != "/" {
		t.Fatalf("sign in as %s: status %d, location %q\n%s", email, res.status, res.header.Get("Location"), res.body)
	}
	return c
}

// response is what tests look at: status, headers and the body read in full.
type response struct {
	status int
	header http.Header
	body   string
}

func (b *testBundle) do(t *testing.T, c *http.Client, req *http.Request) response {
	t.Helper()
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", req.Method, req.URL.Path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(body)}
}

func (b *testBundle) get(t *testing.T, c *http.Client, path string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return b.do(t, c, req)
}

// postForm posts like a same-origin browser form does.
func (b *testBundle) postForm(t *testing.T, c *http.Client, path string, form url.Values, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.url)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range header {
		req.Header[k] = v
	}
	return b.do(t, c, req)
}

var htmx = http.Header{"Hx-Request": {"true"}}

// usageFixture is what a usage event needs to point at.
type usageFixture struct {
	key     sqlc.APIKey
	account sqlc.Account
	price   sqlc.Price
}

func (b *testBundle) usageFixture(t *testing.T, user sqlc.User) usageFixture {
	t.Helper()
	ctx := context.Background()
	gen := apikey.Generate()
	key, err := b.q.APIKeyInsert(ctx, b.db, sqlc.APIKeyInsertParams{UserID: user.ID, Name: "laptop", DisplayPrefix: gen.DisplayPrefix, Hash: gen.Hash})
	if err != nil {
		t.Fatal(err)
	}
	acct, err := b.q.AccountInsert(ctx, b.db, sqlc.AccountInsertParams{
		Name: "upstream-" + fmt.Sprint(user.ID), Provider: "anthropic", Kind: "api_key", BaseURL: "https://api.anthropic.com",
		SecretEnc: []byte{1}, Weight: 1, Models: []string{}, ModelMap: []byte("{}"),
	})
	if err != nil {
		t.Fatal(err)
	}
	price, err := b.q.PriceInsert(ctx, b.db, sqlc.PriceInsertParams{
		Provider: "anthropic", Pattern: "claude-sonnet-4-5-" + fmt.Sprint(user.ID), Match: "exact", EffectiveFrom: time.Now().Add(-time.Hour),
		InputPico: 3_000_000, OutputPico: 15_000_000, CacheWrite5mPico: 3_750_000, CacheWrite1hPico: 6_000_000, CacheReadPico: 300_000,
	})
	if err != nil {
		t.Fatal(err)
	}
	return usageFixture{key: key, account: acct, price: price}
}

// usageEvent is one row to insert with insertUsage.
type usageEvent struct {
	requestID               string
	at                      time.Time
	model                   string
	in, out, cacheW, cacheR int64
	billed                  int64
	status                  int32
}

func (b *testBundle) insertUsage(t *testing.T, user sqlc.User, f usageFixture, events ...usageEvent) {
	t.Helper()
	var p sqlc.UsageEventInsertBatchParams
	for _, e := range events {
		p.RequestID = append(p.RequestID, e.requestID)
		p.CreatedAt = append(p.CreatedAt, e.at)
		p.UserID = append(p.UserID, user.ID)
		p.APIKeyID = append(p.APIKeyID, f.key.ID)
		p.GroupID = append(p.GroupID, user.GroupID)
		p.AccountID = append(p.AccountID, f.account.ID)
		p.Provider = append(p.Provider, "anthropic")
		p.Endpoint = append(p.Endpoint, "/v1/messages")
		p.ModelRequested = append(p.ModelRequested, e.model)
		p.ModelUpstream = append(p.ModelUpstream, e.model)
		p.InputTokens = append(p.InputTokens, e.in)
		p.OutputTokens = append(p.OutputTokens, e.out)
		p.CacheWrite5mTokens = append(p.CacheWrite5mTokens, e.cacheW)
		p.CacheWrite1hTokens = append(p.CacheWrite1hTokens, 0)
		p.CacheReadTokens = append(p.CacheReadTokens, e.cacheR)
		p.ReasoningTokens = append(p.ReasoningTokens, 0)
		p.OfficialCostNano = append(p.OfficialCostNano, e.billed)
		p.BilledCostNano = append(p.BilledCostNano, e.billed)
		p.FactorNum = append(p.FactorNum, 1)
		p.FactorDen = append(p.FactorDen, 1)
		p.PriceID = append(p.PriceID, f.price.ID)
		p.FxRateMicro = append(p.FxRateMicro, 0)
		p.Status = append(p.Status, e.status)
		p.Stream = append(p.Stream, false)
		p.TtfbMs = append(p.TtfbMs, 100)
		p.DurationMs = append(p.DurationMs, 900)
		p.ClientIP = append(p.ClientIP, "127.0.0.1")
		p.UserAgent = append(p.UserAgent, "test")
		p.ErrorClass = append(p.ErrorClass, "")
		p.Attempt = append(p.Attempt, 1)
		p.WalletTxID = append(p.WalletTxID, 0)
	}
	rows, err := b.q.UsageEventInsertBatch(context.Background(), b.db, p)
	if err != nil || len(rows) != len(events) {
		t.Fatalf("insert usage: %d rows, %v", len(rows), err)
	}
}

// topUp credits the user's wallet the way billing does: the ledger row and the cached
// balance in one transaction.
func (b *testBundle) topUp(t *testing.T, user sqlc.User, nano int64, ref string) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, b.db, func(tx pgx.Tx) error {
		if _, err := b.q.WalletTxInsert(ctx, tx, sqlc.WalletTxInsertParams{UserID: user.ID, AmountNano: nano, Kind: "topup", Ref: ref, Note: "test credit"}); err != nil {
			return err
		}
		_, err := b.q.UserBalanceAdd(ctx, tx, sqlc.UserBalanceAddParams{ID: user.ID, AmountNano: nano})
		return err
	})
	if err != nil {
		t.Fatalf("top up: %v", err)
	}
}

func mustContain(t *testing.T, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("body does not contain %q", w)
		}
	}
	if t.Failed() {
		t.Logf("body:\n%s", body)
	}
}

func mustNotContain(t *testing.T, body string, unwanted ...string) {
	t.Helper()
	for _, u := range unwanted {
		if strings.Contains(body, u) {
			t.Errorf("body contains %q", u)
		}
	}
}

func sqlcKeyParams(id, userID int64) sqlc.APIKeyGetForUserParams {
	return sqlc.APIKeyGetForUserParams{ID: id, UserID: userID}
}
