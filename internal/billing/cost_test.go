package billing

import "testing"

func TestCost(t *testing.T) {
	sonnet := Rates{Input: 3_000_000, Output: 15_000_000, CacheWrite5m: 3_750_000, CacheWrite1h: 6_000_000, CacheRead: 300_000}
	for _, c := range []struct {
		name             string
		rates            Rates
		usage            Usage
		factor           Factor
		official, billed int64
	}{
		{"input and output", sonnet, Usage{Input: 1000, Output: 500}, One, 10_500_000, 10_500_000},
		{"every class", sonnet, Usage{Input: 10, Output: 20, CacheWrite5m: 30, CacheWrite1h: 40, CacheRead: 50},
			One, 30_000 + 300_000 + 112_500 + 240_000 + 15_000, 697_500},
		{"rounds half up once", Rates{Input: 1_500}, Usage{Input: 1}, One, 2, 2},    // 1.5 nano → 2
		{"below half rounds down", Rates{Input: 1_499}, Usage{Input: 1}, One, 1, 1}, // 1.499 → 1
		{"multiplier 1.5x", sonnet, Usage{Input: 1000}, MultiplierFactor(1_500_000), 3_000_000, 4_500_000},
		{"multiplier rounds from the exact cost", Rates{Input: 1_000}, Usage{Input: 1}, MultiplierFactor(1_500_000), 1, 2},
		// The worked example: official $0.10, peg ¥2, live rate ¥7.20, multiplier 1
		// → 0.10 × 2 / 7.2 = $0.027777… → 27,777,778 nano-USD.
		{"RMB peg worked example", Rates{Input: 100_000_000}, Usage{Input: 1000}, PegFactor(2_000_000, 7_200_000, 1_000_000), 100_000_000, 27_777_778},
		{"zero usage", sonnet, Usage{}, One, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			official, billed := Cost(c.rates, c.usage, c.factor)
			if official != c.official || billed != c.billed {
				t.Fatalf("Cost = (%d, %d), want (%d, %d)", official, billed, c.official, c.billed)
			}
		})
	}
}

func TestFactorReduced(t *testing.T) {
	if f := MultiplierFactor(1_000_000); f != One {
		t.Fatalf("MultiplierFactor(1e6) = %+v, want 1/1", f)
	}
	if f := PegFactor(2_000_000, 7_200_000, 1_000_000); f.Num*36 != f.Den*10 {
		t.Fatalf("PegFactor = %+v, want 10/36", f)
	}
}
