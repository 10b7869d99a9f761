package views

import (
	"strconv"
	"strings"
	"time"
)

// FixedDecimal renders v/10^scale exactly, with at least minDecimals decimals and the
// trailing zeros past them trimmed: FixedDecimal(300_000, 6, 2) = "0.30",
// FixedDecimal(75_000, 6, 2) = "0.075", FixedDecimal(-1_500_000, 6, 0) = "-1.5".
func FixedDecimal(v int64, scale, minDecimals int) string {
	neg := v < 0
	u := uint64(v)
	if neg {
		u = uint64(-v)
	}
	div := uint64(1)
	for range scale {
		div *= 10
	}
	whole := strconv.FormatUint(u/div, 10)
	frac := ""
	if scale > 0 {
		frac = strconv.FormatUint(u%div, 10)
		frac = strings.Repeat("0", scale-len(frac)) + frac
		for len(frac) > minDecimals && frac[len(frac)-1] == '0' {
			frac = frac[:len(frac)-1]
		}
	}
	s := whole
	if frac != "" {
		s += "." + frac
	}
	if neg {
		return "-" + s
	}
	return s
}

// perMTok renders a per-token price in pico-USD as dollars per million tokens
// (pico-USD per token = micro-USD per million tokens): 3_000_000 → "$3.00".
func perMTok(pico int64) string { return "$" + FixedDecimal(pico, 6, 2) }

// yuanRate renders a USD/CNY rate in micro-yuan exactly, with at least four decimals:
// 7_200_000 → "¥7.2000", 7_182_551 → "¥7.182551".
func yuanRate(micro int64) string { return "¥" + FixedDecimal(micro, 6, 4) }

// ago says how long before now t was, roughly: "just now", "5 minutes ago", "3 hours ago".
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour") + " ago"
	default:
		return plural(int(d/(24*time.Hour)), "day") + " ago"
	}
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.Itoa(n) + " " + unit + "s"
}

// day renders a date (UTC) without the time.
func day(t time.Time) string { return t.UTC().Format("2006-01-02") }

// joinLines puts one item per line.
func joinLines(items []string) string { return strings.Join(items, "\n") }
