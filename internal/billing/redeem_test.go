package billing_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/testenv"
)

var codeRE = regexp.MustCompile(`^TG-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}$`)

type redeemBundle struct {
	db    *pgxpool.Pool
	admin int64
	users []int64
}

func setupRedeem(t *testing.T, users int) *redeemBundle {
	t.Helper()
	ctx, q := context.Background(), sqlc.New()
	b := &redeemBundle{db: testenv.DB(t)}
	g, err := q.GroupInsert(ctx, b.db, sqlc.GroupInsertParams{Name: "default", IsDefault: true})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := q.UserInsert(ctx, b.db, sqlc.UserInsertParams{Email: "admin@example.com", PasswordHash: "x", Role: "admin", GroupID: g.ID})
	if err != nil {
		t.Fatal(err)
	}
	b.admin = admin.ID
	for i := range users {
		u, err := q.UserInsert(ctx, b.db, sqlc.UserInsertParams{
			Email: fmt.Sprintf("u%d@example.com", i), PasswordHash: "x", Role: "user", GroupID: g.ID,
		})
		if err != nil {
			t.Fatal(err)
		}
		b.users = append(b.users, u.ID)
	}
	return b
}

func (b *redeemBundle) generate(t *testing.T, batch string, n int, value int64, uses int, expires *time.Time) []string {
	t.Helper()
	codes, err := billing.GenerateCodes(context.Background(), b.db, batch, n, value, uses, expires, b.admin)
	if err != nil {
		t.Fatalf("generate %s: %v", batch, err)
	}
	return codes
}

func (b *redeemBundle) balance(t *testing.T, user int64) (cached, ledger int64) {
	t.Helper()
	q := sqlc.New()
	cached, err := q.UserBalanceGet(context.Background(), b.db, user)
	if err != nil {
		t.Fatal(err)
	}
	ledger, err = q.WalletTxSumByUser(context.Background(), b.db, user)
	if err != nil {
		t.Fatal(err)
	}
	return cached, ledger
}

func TestGenerateCodes(t *testing.T) {
	t.Parallel()
	b := setupRedeem(t, 0)
	ctx := context.Background()
	codes := b.generate(t, "launch", 50, 5_000_000_000, 1, nil)
	seen := map[string]bool{}
	for _, c := range codes {
		if !codeRE.MatchString(c) || seen[c] {
			t.Fatalf("code %q malformed or repeated", c)
		}
		seen[c] = true
	}
	// Only hashes are stored: no code appears anywhere in the table.
	var plaintextFound bool
	err := b.db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM redeem_codes WHERE code_hash::text LIKE '%' || $1 || '%' OR display_prefix = $1)", codes[0]).Scan(&plaintextFound)
	if err != nil || plaintextFound {
		t.Fatalf("plaintext stored: %v %v", plaintextFound, err)
	}
	var prefix string
	if err := b.db.QueryRow(ctx, "SELECT display_prefix FROM redeem_codes ORDER BY id LIMIT 1").Scan(&prefix); err != nil || prefix != codes[0][:7]+"-…" {
		t.Fatalf("display prefix %q (%v), want %q", prefix, err, codes[0][:7]+"-…")
	}

	past := time.Now().Add(-time.Minute)
	for _, tc := range []struct {
		name   string
		batch  string
		n      int
		value  int64
		uses   int
		expiry *time.Time
	}{
		{"name taken", "launch", 1, 1, 1, nil},
		{"no name", "  ", 1, 1, 1, nil},
		{"no codes", "b", 0, 1, 1, nil},
		{"too many codes", "b", billing.MaxCodesPerBatch + 1, 1, 1, nil},
		{"zero value", "b", 1, 0, 1, nil},
		{"no uses", "b", 1, 1, 0, nil},
		{"expired", "b", 1, 1, 1, &past},
	} {
		_, err := billing.GenerateCodes(ctx, b.db, tc.batch, tc.n, tc.value, tc.uses, tc.expiry, b.admin)
		var be *billing.BatchError
		if !errors.As(err, &be) || be.Problem == "" {
			t.Errorf("%s: err = %v, want a BatchError", tc.name, err)
		}
	}
}

func TestNormalizeCode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"TG-ABCD-EFGH-JK23":     "TG-ABCD-EFGH-JK23",
		" tg-abcd-efgh-jk23 \n": "TG-ABCD-EFGH-JK23",
		"abcdefghjk23":          "TG-ABCD-EFGH-JK23",
		"TG ABCD EFGH JK23":     "TG-ABCD-EFGH-JK23",
		"TGTG-ABCD-EFGH-JK":     "TG-TGAB-CDEF-GHJK", // a body may itself start with TG
		"TG-ABCD-EFGH-JK2":      "",
		"TG-ABCD-EFGH-JK20":     "", // 0 is not in the alphabet
		"TG-ABCD-EFGH-JK2O":     "",
		"':DROP TABLE":          "",
	} {
		got, ok := billing.NormalizeCode(in)
		if got != want || ok != (want != "") {
			t.Errorf("NormalizeCode(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestRedeem(t *testing.T) {
	t.Parallel()
	b := setupRedeem(t, 3)
	ctx := context.Background()
	ada, bob, cy := b.users[0], b.users[1], b.users[2]
	codes := b.generate(t, "promo", 2, 2_500_000_000, 2, nil)

	// Typed loosely (lower case, no dashes), it still works.
	credited, err := billing.Redeem(ctx, b.db, strings.ToLower(strings.ReplaceAll(codes[0], "-", "")), ada)
	if err != nil || credited != 2_500_000_000 {
		t.Fatalf("redeem: %d, %v", credited, err)
	}
	if cached, ledger := b.balance(t, ada); cached != 2_500_000_000 || ledger != cached {
		t.Fatalf("balance after redeem: cached %d, ledger %d", cached, ledger)
	}
	var kind, ref string
	if err := b.db.QueryRow(ctx, "SELECT kind, ref FROM wallet_tx WHERE user_id = $1", ada).Scan(&kind, &ref); err != nil || kind != "redeem" || !regexp.MustCompile(`^redeem:\d+:\d+$`).MatchString(ref) {
		t.Fatalf("ledger row %s %s (%v)", kind, ref, err)
	}

	if _, err := billing.Redeem(ctx, b.db, codes[0], ada); !errors.Is(err, billing.ErrCodeAlreadyRedeemed) {
		t.Fatalf("second redeem by the same user: %v", err)
	}
	if _, err := billing.Redeem(ctx, b.db, codes[0], bob); err != nil {
		t.Fatalf("redeem by a second user: %v", err)
	}
	if _, err := billing.Redeem(ctx, b.db, codes[0], cy); !errors.Is(err, billing.ErrCodeUsedUp) {
		t.Fatalf("redeem past max uses: %v", err)
	}
	if _, err := billing.Redeem(ctx, b.db, "TG-2222-2222-2222", ada); !errors.Is(err, billing.ErrCodeUnknown) {
		t.Fatalf("unknown code: %v", err)
	}
	if _, err := billing.Redeem(ctx, b.db, "nonsense", ada); !errors.Is(err, billing.ErrCodeUnknown) {
		t.Fatalf("malformed code: %v", err)
	}

	// Disabled and expired codes.
	if n, err := sqlc.New().RedeemBatchDisable(ctx, b.db, "promo"); err != nil || n != 2 {
		t.Fatalf("disable: %d, %v", n, err)
	}
	if _, err := billing.Redeem(ctx, b.db, codes[1], cy); !errors.Is(err, billing.ErrCodeDisabled) {
		t.Fatalf("disabled code: %v", err)
	}
	soon := time.Now().Add(time.Second)
	expiring := b.generate(t, "short", 1, 1_000, 1, &soon)
	if _, err := b.db.Exec(ctx, "UPDATE redeem_codes SET expires_at = now() - interval '1 second' WHERE batch = 'short'"); err != nil {
		t.Fatal(err)
	}
	if _, err := billing.Redeem(ctx, b.db, expiring[0], cy); !errors.Is(err, billing.ErrCodeExpired) {
		t.Fatalf("expired code: %v", err)
	}
	if cached, ledger := b.balance(t, cy); cached != 0 || ledger != 0 {
		t.Fatalf("refused redemptions moved money: cached %d, ledger %d", cached, ledger)
	}
}

// TestRedeemConcurrently races 20 users (and a few repeat attempts) at a 5-use code:
// exactly five are credited, and the ledger agrees with every balance.
func TestRedeemConcurrently(t *testing.T) {
	t.Parallel()
	b := setupRedeem(t, 20)
	ctx := context.Background()
	code := b.generate(t, "race", 1, 1_000_000_000, 5, nil)[0]

	var wg sync.WaitGroup
	var mu sync.Mutex
	results := map[error]int{}
	for i := range 25 {
		user := b.users[i%20] // five users try twice
		wg.Go(func() {
			_, err := billing.Redeem(ctx, b.db, code, user)
			mu.Lock()
			results[err]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if results[nil] != 5 || results[nil]+results[billing.ErrCodeUsedUp]+results[billing.ErrCodeAlreadyRedeemed] != 25 {
		t.Fatalf("outcomes %v, want exactly 5 credits and the rest refused", results)
	}
	var sum, rows, used int64
	if err := b.db.QueryRow(ctx, "SELECT coalesce(sum(amount_nano), 0), count(*) FROM wallet_tx WHERE kind = 'redeem'").Scan(&sum, &rows); err != nil {
		t.Fatal(err)
	}
	if err := b.db.QueryRow(ctx, "SELECT used_count FROM redeem_codes").Scan(&used); err != nil {
		t.Fatal(err)
	}
	if sum != 5_000_000_000 || rows != 5 || used != 5 {
		t.Fatalf("ledger sum %d in %d rows, used_count %d; want $5 in 5 rows, 5 uses", sum, rows, used)
	}
	mismatches, err := sqlc.New().UserBalanceMismatches(ctx, b.db)
	if err != nil || len(mismatches) != 0 {
		t.Fatalf("balances differ from the ledger: %+v (%v)", mismatches, err)
	}
}
