// Package billing prices usage and keeps the wallet ledger.
//
// Cost math is integer-only. Prices are pico-USD (1e-12) per token, so every public list
// price is exact. A request's official cost is first summed exactly in pico-USD; the
// billed cost applies the group's factor as an exact fraction and rounds ONCE, half up,
// to nano-USD:
//
//	official_pico = Σ tokens_c × price_c                  (exact)
//	official_nano = round(official_pico / 1000)            (for display and reports)
//	billed_nano   = round(official_pico × num / (den × 1000))
//
// The billed cost is rounded from the exact official cost, never from a rounded one.
package billing

import (
	"math"
	"math/bits"
)

// Usage is a request's token counts by class. Input excludes cache tokens (Anthropic's
// convention; the OpenAI and Gemini taps subtract cached tokens before filling it).
type Usage struct {
	Input        int64 `json:"input"`
	Output       int64 `json:"output"`
	CacheWrite5m int64 `json:"cache_write_5m"`
	CacheWrite1h int64 `json:"cache_write_1h"`
	CacheRead    int64 `json:"cache_read"`
	Reasoning    int64 `json:"reasoning,omitempty"` // informational: already inside Output
}

// Prompt is every input-side token: what long-context tiers are measured on.
func (u Usage) Prompt() int64 { return u.Input + u.CacheWrite5m + u.CacheWrite1h + u.CacheRead }

// Zero reports whether the usage has no billable tokens.
func (u Usage) Zero() bool { return u.Prompt() == 0 && u.Output == 0 }

// Rates are per-token prices in pico-USD for each class.
type Rates struct {
	Input, Output, CacheWrite5m, CacheWrite1h, CacheRead int64
}

// Factor is a group's price factor as an exact fraction Num/Den.
type Factor struct {
	Num, Den int64
}

// One is the neutral factor.
var One = Factor{Num: 1, Den: 1}

// MultiplierFactor is the factor for a multiplier in parts per million.
func MultiplierFactor(ppm int64) Factor { return Factor{Num: ppm, Den: 1_000_000}.reduced() }

// PegFactor is the factor of an RMB peg: peg_rmb / (usd_cny) × multiplier, with the peg
// and the rate in micro-yuan and the multiplier in ppm.
func PegFactor(pegRMBMicro, usdCNYMicro, multiplierPPM int64) Factor {
	// peg/rate × ppm/1e6 = (peg × ppm) / (rate × 1e6); both fit int64 for any sane input
	// (peg ≤ ¥1000, ppm ≤ 1000×, rate ≤ ¥1000).
	return Factor{Num: pegRMBMicro * multiplierPPM, Den: usdCNYMicro * 1_000_000}.reduced()
}

func (f Factor) reduced() Factor {
	a, b := f.Num, f.Den
	for b != 0 {
		a, b = b, a%b
	}
	if a <= 1 {
		return f
	}
	return Factor{Num: f.Num / a, Den: f.Den / a}
}

// OfficialPico is the exact list-price cost in pico-USD.
func OfficialPico(r Rates, u Usage) int64 {
	return u.Input*r.Input + u.Output*r.Output + u.CacheWrite5m*r.CacheWrite5m +
		u.CacheWrite1h*r.CacheWrite1h + u.CacheRead*r.CacheRead
}

// Cost returns the official and billed cost in nano-USD.
func Cost(r Rates, u Usage, f Factor) (officialNano, billedNano int64) {
	pico := OfficialPico(r, u)
	return divRound(uint64(pico), 1, 1000), divRound(uint64(pico), uint64(f.Num), uint64(f.Den)*1000)
}

// divRound computes round_half_up(a × b / d) with a 128-bit intermediate.
func divRound(a, b, d uint64) int64 {
	hi, lo := bits.Mul64(a, b)
	if hi >= d {
		return math.MaxInt64 // unreachable for real prices; saturate rather than wrap
	}
	q, r := bits.Div64(hi, lo, d)
	if r >= d-r { // r ≥ d/2 without overflow
		q++
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}
