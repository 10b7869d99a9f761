package money

import "testing"

func TestFormatUSD(t *testing.T) {
	for _, c := range []struct {
		nano int64
		want string
	}{
		{0, "$0.0000"}, {27_777_778, "$0.0278"}, {10 * NanosPerUSD, "$10.0000"},
		{49_999, "$0.0000"}, {50_000, "$0.0001"}, {-1_500_000_000, "-$1.5000"}, {-10, "$0.0000"},
	} {
		if got := FormatUSD(c.nano); got != c.want {
			t.Errorf("FormatUSD(%d) = %q, want %q", c.nano, got, c.want)
		}
	}
}

func TestParseUSD(t *testing.T) {
	for in, want := range map[string]int64{"10": 10 * NanosPerUSD, "$0.25": 250_000_000, ".5": 500_000_000, "0.000000001": 1} {
		if got, err := ParseUSD(in); err != nil || got != want {
			t.Errorf("ParseUSD(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "abc", "1.0000000001", "1e3"} {
		if _, err := ParseUSD(bad); err == nil {
			t.Errorf("ParseUSD(%q) accepted", bad)
		}
	}
}
