// Package money formats and parses nano-USD amounts. Money is int64 nano-USD (1e-9 USD)
// everywhere it is stored or added; floats never touch it.
package money

import (
	"errors"
	"strconv"
	"strings"
)

// NanosPerUSD is 1 USD in nano-USD.
const NanosPerUSD = 1_000_000_000

// FormatUSD renders nano-USD as dollars with four decimals, rounded half away from zero:
// 27_777_778 → "$0.0278", -1_500_000_000 → "-$1.5000".
func FormatUSD(nano int64) string {
	neg := nano < 0
	u := uint64(nano)
	if neg {
		u = uint64(-nano)
	}
	tenThousandths := (u + 50_000) / 100_000 // 1e-4 USD units, half up
	s := strconv.FormatUint(tenThousandths/10_000, 10) + "." + pad4(tenThousandths%10_000)
	if neg && tenThousandths != 0 {
		return "-$" + s
	}
	return "$" + s
}

func pad4(n uint64) string {
	s := strconv.FormatUint(n, 10)
	return strings.Repeat("0", 4-len(s)) + s
}

// ParseUSD reads a non-negative dollar amount with up to nine decimals ("10", "0.25",
// "$3.50") exactly, without floats.
func ParseUSD(s string) (int64, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "$")
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" && frac == "" {
		return 0, errors.New("empty amount")
	}
	if len(frac) > 9 {
		return 0, errors.New("at most nine decimals")
	}
	w := int64(0)
	if whole != "" {
		var err error
		if w, err = strconv.ParseInt(whole, 10, 64); err != nil || w < 0 || w > 9_000_000_000 {
			return 0, errors.New("not a dollar amount")
		}
	}
	f := int64(0)
	if frac != "" {
		var err error
		if f, err = strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64); err != nil || f < 0 {
			return 0, errors.New("not a dollar amount")
		}
	}
	return w*NanosPerUSD + f, nil
}
