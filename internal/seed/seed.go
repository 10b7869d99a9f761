// Package seed creates what a fresh installation needs (the default group and pool, the
// price catalogue, the bootstrap admin) and, for development, a demo user, key and
// upstream account pointing at fakellm. Every step is idempotent.
package seed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tollgate/tollgate/internal/account"
	"github.com/tollgate/tollgate/internal/apikey"
	"github.com/tollgate/tollgate/internal/auth"
	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/money"
	"github.com/tollgate/tollgate/internal/secret"
)

// Options says what to seed.
type Options struct {
	AdminEmail    string // bootstrap admin; skipped when empty
	AdminPassword string
	// DemoEnvPath, when set, seeds the demo user, key and account and writes WEB_URL,
	// PROXY_URL, ADMIN_EMAIL, ADMIN_PASSWORD and DEMO_API_KEY to this file. A DEMO_API_KEY
	// already in the file is kept, so running the seed twice changes nothing.
	DemoEnvPath string
	FakeLLMURL  string // the demo account's base URL
	WebURL      string
	ProxyURL    string
	Secret      []byte // SECRET_KEY, to seal the demo account's credential
	Log         *slog.Logger
}

// DefaultGroupConcurrency is the seeded default group's per-user concurrency limit.
const DefaultGroupConcurrency = 10

// Demo account and user names, stable so the seed can find what it made before.
const (
	DemoEmail        = "demo@tollgate.local"
	DemoPassword     = "demo-password"
	DemoAccountName  = "fakellm-anthropic"
	demoTopupRef     = "seed:demo-welcome"
	demoTopupDollars = "10"
)

// Result is what the seed made or found.
type Result struct {
	AdminID    int64
	DemoUserID int64
	DemoKey    string
	AccountID  int64
}

// Run seeds the database.
func Run(ctx context.Context, pool *pgxpool.Pool, opts Options) (Result, error) {
	var res Result
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := sqlc.New()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		group, err := q.GroupGetDefault(ctx, tx)
		if errors.Is(err, pgx.ErrNoRows) {
			group, err = q.GroupInsert(ctx, tx, sqlc.GroupInsertParams{Name: "default", Description: "Default tier", IsDefault: true,
				// A concurrency limit per user bounds how far a balance can be overdrawn (one
				// in-flight request per slot when it reaches zero).
				DefaultConcurrency: DefaultGroupConcurrency})
			log.Info("seeded default group")
		}
		if err != nil {
			return fmt.Errorf("default group: %w", err)
		}
		poolRow, err := q.PoolGetByName(ctx, tx, "default")
		if errors.Is(err, pgx.ErrNoRows) {
			poolRow, err = q.PoolInsert(ctx, tx, sqlc.PoolInsertParams{Name: "default", Description: "Default account pool"})
		}
		if err != nil {
			return fmt.Errorf("default pool: %w", err)
		}
		if err := q.GroupPoolAttach(ctx, tx, sqlc.GroupPoolAttachParams{GroupID: group.ID, PoolID: poolRow.ID}); err != nil {
			return err
		}
		n, err := billing.SeedDefaultPrices(ctx, q, tx)
		if err != nil {
			return err
		}
		if n > 0 {
			log.Info("seeded default price catalogue", "prices", n)
		}
		if opts.AdminEmail != "" {
			if res.AdminID, err = ensureUser(ctx, tx, opts.AdminEmail, opts.AdminPassword, "admin", group.ID); err != nil {
				return fmt.Errorf("admin user: %w", err)
			}
		}
		if opts.DemoEnvPath == "" {
			return nil
		}
		return seedDemo(ctx, tx, opts, group.ID, poolRow.ID, &res)
	})
	if err != nil {
		return res, fmt.Errorf("seed: %w", err)
	}
	if opts.DemoEnvPath != "" {
		if err := writeEnv(opts.DemoEnvPath, [][2]string{
			{"WEB_URL", opts.WebURL}, {"PROXY_URL", opts.ProxyURL},
			{"ADMIN_EMAIL", opts.AdminEmail}, {"ADMIN_PASSWORD", opts.AdminPassword},
			{"DEMO_EMAIL", DemoEmail}, {"DEMO_PASSWORD", DemoPassword},
			{"DEMO_API_KEY", res.DemoKey},
		}); err != nil {
			return res, err
		}
	}
	return res, nil
}

func ensureUser(ctx context.Context, tx pgx.Tx, email, password, role string, groupID int64) (int64, error) {
	q := sqlc.New()
	u, err := q.UserGetByEmail(ctx, tx, email)
	if err == nil {
		return u.ID, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return 0, err
	}
	if len(password) < auth.MinPasswordLen {
		return 0, fmt.Errorf("password for %s must have at least %d characters", email, auth.MinPasswordLen)
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return 0, err
	}
	now := time.Now()
	u, err = q.UserInsert(ctx, tx, sqlc.UserInsertParams{
		Email: strings.ToLower(email), PasswordHash: hash, Role: role, GroupID: groupID, EmailVerifiedAt: &now,
	})
	return u.ID, err
}

func seedDemo(ctx context.Context, tx pgx.Tx, opts Options, groupID, poolID int64, res *Result) error {
	q := sqlc.New()
	var err error
	if res.DemoUserID, err = ensureUser(ctx, tx, DemoEmail, DemoPassword, "user", groupID); err != nil {
		return fmt.Errorf("demo user: %w", err)
	}
	amount, _ := money.ParseUSD(demoTopupDollars)
	if _, err := billing.Post(ctx, tx, billing.Entry{
		UserID: res.DemoUserID, Amount: amount, Kind: "topup", Ref: demoTopupRef, Note: "Demo welcome credit",
	}); err != nil {
		return err
	}

	// Keep the key the developer already has in demo.env, so their shell history works.
	key := apikey.Generate()
	if prev := readEnv(opts.DemoEnvPath)["DEMO_API_KEY"]; apikey.WellFormed(prev) {
		key = apikey.FromPlaintext(prev)
	}
	if _, err := q.APIKeyGetByHash(ctx, tx, key.Hash); errors.Is(err, pgx.ErrNoRows) {
		if _, err := q.APIKeyInsert(ctx, tx, sqlc.APIKeyInsertParams{
			UserID: res.DemoUserID, Name: "demo", DisplayPrefix: key.DisplayPrefix, Hash: key.Hash,
		}); err != nil {
			return fmt.Errorf("demo key: %w", err)
		}
	} else if err != nil {
		return err
	}
	res.DemoKey = key.Plaintext

	box, err := secret.NewBox(opts.Secret, secret.PurposeAccount)
	if err != nil {
		return err
	}
	for _, d := range demoAccounts {
		id, err := ensureAccount(ctx, tx, box, d, opts.FakeLLMURL)
		if err != nil {
			return fmt.Errorf("demo account %s: %w", d.name, err)
		}
		if d.provider == "anthropic" {
			res.AccountID = id
		}
		if err := q.PoolAccountAttach(ctx, tx, sqlc.PoolAccountAttachParams{PoolID: poolID, AccountID: id}); err != nil {
			return err
		}
	}
	return nil
}

// demoAccounts are one upstream account per provider, all served by fakellm, so the
// demo key works with claude, codex, the SDKs and Gemini clients at once.
var demoAccounts = []struct{ name, provider, key string }{
	{DemoAccountName, "anthropic", "sk-ant-fakellm-demo"},
	{"fakellm-openai", "openai", "sk-openai-fakellm-demo"},
	{"fakellm-gemini", "gemini", "gemini-fakellm-demo"},
}

func ensureAccount(ctx context.Context, tx pgx.Tx, box *secret.Box, d struct{ name, provider, key string }, baseURL string) (int64, error) {
	q := sqlc.New()
	acc, err := q.AccountGetByName(ctx, tx, d.name)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		sealed, err := account.Seal(box, account.Credential{APIKey: d.key})
		if err != nil {
			return 0, err
		}
		acc, err = q.AccountInsert(ctx, tx, sqlc.AccountInsertParams{
			Name: d.name, Provider: d.provider, Kind: "api_key", BaseURL: baseURL,
			SecretEnc: sealed, Priority: 100, Weight: 1, Models: []string{}, ModelMap: []byte("{}"),
		})
		return acc.ID, err
	case err != nil:
		return 0, err
	case acc.BaseURL != baseURL:
		return acc.ID, q.AccountUpdateBaseURL(ctx, tx, sqlc.AccountUpdateBaseURLParams{ID: acc.ID, BaseURL: baseURL})
	}
	return acc.ID, nil
}

// readEnv reads KEY=VALUE lines; a missing file is empty.
func readEnv(path string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			out[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	return out
}

func writeEnv(path string, kv [][2]string) error {
	var b strings.Builder
	b.WriteString("# Written by `web seed` (make dev). Source it: set -a; . .dev/demo.env; set +a\n")
	for _, p := range kv {
		fmt.Fprintf(&b, "%s=%s\n", p[0], p[1])
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}
