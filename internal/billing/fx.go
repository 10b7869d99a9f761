package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/db/sqlc"
)

// FXStaleAfter is how old the latest USD/CNY rate may be before the console flags it.
// The rate is fetched hourly, so a stale rate means three fetches in a row failed. A
// stale rate is still used (the last good one beats refusing RMB-pegged groups).
const FXStaleAfter = 3 * time.Hour

// ErrNoFXRate is returned by FXStatus when no rate was ever fetched.
var ErrNoFXRate = errors.New("no USD/CNY exchange rate fetched yet")

// FXStatus returns the latest USD/CNY rate in micro-yuan per dollar, when it was fetched
// and whether it is older than FXStaleAfter at now. Without any rate the error is
// ErrNoFXRate and stale is true.
func FXStatus(ctx context.Context, db sqlc.DBTX, now time.Time) (rateMicro int64, fetchedAt time.Time, stale bool, err error) {
	r, err := sqlc.New().FxRateLatest(ctx, db)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, time.Time{}, true, ErrNoFXRate
	}
	if err != nil {
		return 0, time.Time{}, true, fmt.Errorf("read latest exchange rate: %w", err)
	}
	return r.RateMicro, r.FetchedAt, now.Sub(r.FetchedAt) > FXStaleAfter, nil
}

// Sanity bounds of a fetched USD/CNY rate: anything outside (0, 100) yuan per dollar is a
// broken source, not a market move.
const maxFXRateMicro = 100_000_000

// maxFXBody bounds what is read from the source.
const maxFXBody = 1 << 20

// FetchUSDCNY reads the USD/CNY rate from an HTTP JSON source and returns it in micro-yuan
// per dollar. The source answers in the shape most free rate APIs share:
//
//	{"base": "USD", "rates": {"CNY": 7.2}}        (exchangerate.host, frankfurter)
//	{"base_code": "USD", "rates": {"CNY": 7.2}}   (open.er-api.com)
//
// base/base_code may be missing; when present it must be USD. The number is converted
// from its decimal text, never through a float, and rounded half up to a micro-yuan.
func FetchUSDCNY(ctx context.Context, client *http.Client, url string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("exchange rate source URL: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("fetch exchange rate: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("fetch exchange rate: source answered %s", res.Status)
	}
	return ParseUSDCNY(io.LimitReader(res.Body, maxFXBody))
}

// ParseUSDCNY reads a rate document (see FetchUSDCNY) and returns micro-yuan per dollar.
func ParseUSDCNY(r io.Reader) (int64, error) {
	var doc struct {
		Base     string                 `json:"base"`
		BaseCode string                 `json:"base_code"`
		Rates    map[string]json.Number `json:"rates"`
	}
	dec := json.NewDecoder(r)
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return 0, fmt.Errorf("exchange rate source: malformed JSON: %w", err)
	}
	for _, base := range []string{doc.Base, doc.BaseCode} {
		if base != "" && !strings.EqualFold(base, "USD") {
			return 0, fmt.Errorf("exchange rate source: base currency is %q, want USD", base)
		}
	}
	n, ok := doc.Rates["CNY"]
	if !ok {
		return 0, errors.New(`exchange rate source: no "rates"."CNY" in the answer`)
	}
	micro, err := decimalMicro(n.String())
	if err != nil {
		return 0, fmt.Errorf("exchange rate source: CNY rate %q: %w", n.String(), err)
	}
	if micro <= 0 || micro >= maxFXRateMicro {
		return 0, fmt.Errorf("exchange rate source: CNY rate %s is outside the sane range (0, 100)", n.String())
	}
	return micro, nil
}

// decimalMicro converts a plain non-negative decimal ("7.2", "7.18255") to millionths,
// rounding half up past the sixth decimal. Exponents are refused: rate sources write
// plain decimals, and anything else is safer rejected than guessed.
func decimalMicro(s string) (int64, error) {
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || !digits(whole) || (frac != "" && !digits(frac)) || len(whole) > 9 {
		return 0, errors.New("not a plain decimal number")
	}
	var v int64
	for _, c := range whole {
		v = v*10 + int64(c-'0')
	}
	for i := range 6 {
		d := int64(0)
		if i < len(frac) {
			d = int64(frac[i] - '0')
		}
		v = v*10 + d
	}
	if len(frac) > 6 && frac[6] >= '5' {
		v++
	}
	return v, nil
}

func digits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
