package billing_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/testenv"
)

func TestParseUSDCNY(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, doc string
		want      int64
		err       string
	}{
		{"exchangerate.host shape", `{"base":"USD","rates":{"CNY":7.2,"EUR":0.92}}`, 7_200_000, ""},
		{"open.er-api shape", `{"result":"success","base_code":"USD","rates":{"CNY":7.182551}}`, 7_182_551, ""},
		{"no base", `{"rates":{"CNY":7.1}}`, 7_100_000, ""},
		{"rounds half up past micro", `{"rates":{"CNY":7.1825515}}`, 7_182_552, ""},
		{"truncates below half", `{"rates":{"CNY":7.1825514999}}`, 7_182_551, ""},
		{"no float surprises", `{"rates":{"CNY":7.3}}`, 7_300_000, ""}, // 7.3 is 7.29999… as a float64
		{"quoted number", `{"rates":{"CNY":"7.25"}}`, 7_250_000, ""},
		{"integer", `{"rates":{"CNY":7}}`, 7_000_000, ""},
		{"other base", `{"base":"EUR","rates":{"CNY":7.8}}`, 0, "base currency"},
		{"no CNY", `{"base":"USD","rates":{"EUR":0.9}}`, 0, "no \"rates\".\"CNY\""},
		{"malformed", `{"rates":`, 0, "malformed"},
		{"not JSON", `<html>rate limited</html>`, 0, "malformed"},
		{"zero", `{"rates":{"CNY":0}}`, 0, "sane range"},
		{"negative", `{"rates":{"CNY":-7.2}}`, 0, "plain decimal"},
		{"too large", `{"rates":{"CNY":100}}`, 0, "sane range"},
		{"exponent", `{"rates":{"CNY":7.2e0}}`, 0, "plain decimal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := billing.ParseUSDCNY(strings.NewReader(tc.doc))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseUSDCNY(%s) = %d, %v; want an error containing %q", tc.doc, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseUSDCNY(%s) = %d, %v; want %d", tc.doc, got, err, tc.want)
			}
		})
	}
}

func TestFetchUSDCNY(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte(`{"base":"USD","rates":{"CNY":7.2}}`))
		case "/down":
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	if got, err := billing.FetchUSDCNY(ctx, srv.Client(), srv.URL+"/ok"); err != nil || got != 7_200_000 {
		t.Fatalf("fetch ok = %d, %v", got, err)
	}
	if _, err := billing.FetchUSDCNY(ctx, srv.Client(), srv.URL+"/down"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("fetch from a failing source: %v", err)
	}
	unreachable := srv.URL
	srv.Close()
	if _, err := billing.FetchUSDCNY(ctx, http.DefaultClient, unreachable+"/ok"); err == nil {
		t.Fatal("fetch from an unreachable source succeeded")
	}
}

func TestFXStatus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.DB(t)
	now := time.Now()
	if _, _, stale, err := billing.FXStatus(ctx, db, now); !errors.Is(err, billing.ErrNoFXRate) || !stale {
		t.Fatalf("without a rate: stale %v, err %v", stale, err)
	}
	q := sqlc.New()
	fetched := now.Add(-2 * time.Hour).Truncate(time.Microsecond)
	if _, err := q.FxRateInsert(ctx, db, sqlc.FxRateInsertParams{RateMicro: 7_200_000, Source: "test", FetchedAt: fetched}); err != nil {
		t.Fatal(err)
	}
	rate, at, stale, err := billing.FXStatus(ctx, db, now)
	if err != nil || rate != 7_200_000 || !at.Equal(fetched) || stale {
		t.Fatalf("fresh rate: %d at %s, stale %v, err %v", rate, at, stale, err)
	}
	if _, _, stale, _ := billing.FXStatus(ctx, db, now.Add(billing.FXStaleAfter)); !stale {
		t.Fatal("a rate older than FXStaleAfter is not flagged stale")
	}
}
