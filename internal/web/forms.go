package web

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/internal/money"
)

// Exact parsing of the decimals admins type (prices, multipliers, pegs, amounts). No
// floats: "0.1" must be exactly 100000 millionths, not 99999.99….

var errNotDecimal = errors.New("not a decimal number")

// parseFixed reads a non-negative decimal with at most decimals places ("1.5", "0.075",
// "3") as an integer count of 10^-decimals: parseFixed("1.5", 6) = 1_500_000.
func parseFixed(raw string, decimals int) (int64, error) {
	s := strings.TrimSpace(raw)
	whole, frac, _ := strings.Cut(s, ".")
	if (whole == "" && frac == "") || !allDigits(whole) || !allDigits(frac) || len(whole) > 12 {
		return 0, errNotDecimal
	}
	if len(frac) > decimals {
		return 0, errors.New("too many decimals")
	}
	v := int64(0)
	for _, c := range whole + frac + strings.Repeat("0", decimals-len(frac)) {
		v = v*10 + int64(c-'0')
		if v > 1<<53 {
			return 0, errors.New("too large")
		}
	}
	return v, nil
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// perMTokPico reads a price in dollars per million tokens as pico-USD per token. They
// are the same number scaled by 1e6 ($3/MTok = 3e-6 $/token = 3,000,000 pico), so up
// to six decimals are exact.
func perMTokPico(raw string) (int64, error) {
	return parseFixed(strings.TrimPrefix(strings.TrimSpace(raw), "$"), 6)
}

// parseSignedUSD reads "+10", "-2.50", "−2.50" or "$5" as signed nano-USD.
func parseSignedUSD(raw string) (int64, error) {
	s := strings.TrimSpace(raw)
	neg := false
	switch {
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	case strings.HasPrefix(s, "−"): // U+2212, what some keyboards and pastes produce
		neg, s = true, strings.TrimPrefix(s, "−")
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	n, err := money.ParseUSD(s)
	if err != nil {
		return 0, err
	}
	if neg {
		return -n, nil
	}
	return n, nil
}

// parseCount reads a non-negative whole number up to max.
func parseCount(raw string, max int64) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
	return n, err == nil && n >= 0 && n <= max
}

// newNonce returns 128 random bits as hex: the idempotency key a form carries.
func newNonce() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validNonce(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
