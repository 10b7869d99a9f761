package web

import (
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/views"
)

// providers are the upstream providers, in the order the console lists them.
var providers = []string{"anthropic", "openai", "gemini"}

func validProvider(p string) bool {
	for _, q := range providers {
		if p == q {
			return true
		}
	}
	return false
}

// priceFormFromRequest reads the price form as typed.
func priceFormFromRequest(r *http.Request) views.PriceForm {
	v := func(name string) string { return strings.TrimSpace(r.PostFormValue(name)) }
	return views.PriceForm{
		Provider: v("provider"), Match: v("match"), Pattern: v("pattern"),
		Input: v("input"), Output: v("output"), CacheWrite5m: v("cache_write_5m"),
		CacheWrite1h: v("cache_write_1h"), CacheRead: v("cache_read"),
		TierThreshold: v("tier_threshold"),
		InputAbove:    v("input_above"), OutputAbove: v("output_above"),
		CacheWrite5mAbove: v("cache_write_5m_above"), CacheWrite1hAbove: v("cache_write_1h_above"),
		CacheReadAbove: v("cache_read_above"),
		Note:           v("note"),
	}
}

// priceFormFromRow fills the form with a row's prices, for a new price based on it.
func priceFormFromRow(p sqlc.Price) views.PriceForm {
	f := views.PriceForm{
		ID: p.ID, Provider: p.Provider, Match: p.Match, Pattern: p.Pattern,
		Input: mtok(p.InputPico), Output: mtok(p.OutputPico), CacheWrite5m: mtok(p.CacheWrite5mPico),
		CacheWrite1h: mtok(p.CacheWrite1hPico), CacheRead: mtok(p.CacheReadPico), Note: p.Note,
	}
	if p.TierThreshold != nil {
		f.TierThreshold = views.FixedDecimal(*p.TierThreshold, 0, 0)
		f.InputAbove, f.OutputAbove = mtokPtr(p.InputAbovePico), mtokPtr(p.OutputAbovePico)
		f.CacheWrite5mAbove, f.CacheWrite1hAbove = mtokPtr(p.CacheWrite5mAbovePico), mtokPtr(p.CacheWrite1hAbovePico)
		f.CacheReadAbove = mtokPtr(p.CacheReadAbovePico)
	}
	return f
}

func mtok(pico int64) string { return views.FixedDecimal(pico, 6, 2) }

func mtokPtr(pico *int64) string {
	if pico == nil {
		return ""
	}
	return mtok(*pico)
}

// maxPerMTokPico bounds a price: $100,000 per million tokens is far past any model and
// catches a slipped decimal point.
const maxPerMTokPico = 100_000 * 1_000_000

// priceParams validates the form and converts it to a new price row effective at. Rule
// fields (provider, match, pattern) are checked too; an edit fills them from the row.
func priceParams(f views.PriceForm, at time.Time, actorID int64) (sqlc.PriceInsertParams, map[string]string) {
	errs := map[string]string{}
	p := sqlc.PriceInsertParams{
		Provider: f.Provider, Pattern: f.Pattern, Match: f.Match, EffectiveFrom: at,
		Note: f.Note, CreatedBy: &actorID,
	}
	if !validProvider(f.Provider) {
		errs["provider"] = "Choose a provider."
	}
	switch {
	case f.Match != "exact" && f.Match != "prefix":
		errs["match"] = "Choose exact or prefix."
	case f.Match == "exact" && f.Pattern == "":
		errs["pattern"] = "Enter the model name. (An empty pattern is allowed only for a prefix rule: the fallback.)"
	case utf8.RuneCountInString(f.Pattern) > 200:
		errs["pattern"] = "Keep the model name under 200 characters."
	case strings.IndexFunc(f.Pattern, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
		errs["pattern"] = "Model names have no spaces."
	}
	if utf8.RuneCountInString(f.Note) > 200 {
		errs["note"] = "Keep the note under 200 characters."
	}
	price := func(name, raw string, required bool) (int64, bool) {
		if raw == "" {
			if required {
				errs[name] = "Enter a price (0 is allowed)."
			}
			return 0, false
		}
		v, err := perMTokPico(raw)
		if err != nil || v > maxPerMTokPico {
			errs[name] = "Enter dollars per million tokens, e.g. 3 or 0.075 (at most six decimals)."
			return 0, false
		}
		return v, true
	}
	p.InputPico, _ = price("input", f.Input, true)
	p.OutputPico, _ = price("output", f.Output, true)
	p.CacheWrite5mPico, _ = price("cache_write_5m", f.CacheWrite5m, true)
	p.CacheWrite1hPico, _ = price("cache_write_1h", f.CacheWrite1h, true)
	p.CacheReadPico, _ = price("cache_read", f.CacheRead, true)

	above := func(name, raw string) *int64 {
		if v, ok := price(name, raw, false); ok {
			return &v
		}
		return nil
	}
	if f.TierThreshold != "" {
		n, ok := parseCount(f.TierThreshold, 1<<40)
		if !ok || n == 0 {
			errs["tier_threshold"] = "Enter a number of tokens, e.g. 200000."
		} else {
			p.TierThreshold = &n
		}
		p.InputAbovePico = above("input_above", f.InputAbove)
		p.OutputAbovePico = above("output_above", f.OutputAbove)
		p.CacheWrite5mAbovePico = above("cache_write_5m_above", f.CacheWrite5mAbove)
		p.CacheWrite1hAbovePico = above("cache_write_1h_above", f.CacheWrite1hAbove)
		p.CacheReadAbovePico = above("cache_read_above", f.CacheReadAbove)
	} else if f.InputAbove+f.OutputAbove+f.CacheWrite5mAbove+f.CacheWrite1hAbove+f.CacheReadAbove != "" {
		errs["tier_threshold"] = "Set the threshold the long-context prices apply above."
	}
	if len(errs) > 0 {
		return p, errs
	}
	return p, nil
}

// priceDetail is what the audit log keeps of a price row.
func priceDetail(p sqlc.Price) map[string]any {
	return map[string]any{
		"provider": p.Provider, "pattern": p.Pattern, "match": p.Match,
		"effective_from": p.EffectiveFrom, "input_pico": p.InputPico, "output_pico": p.OutputPico,
		"cache_write_5m_pico": p.CacheWrite5mPico, "cache_write_1h_pico": p.CacheWrite1hPico,
		"cache_read_pico": p.CacheReadPico, "tier_threshold": p.TierThreshold, "note": p.Note,
	}
}

func priceRow(p sqlc.Price) views.PriceRow {
	return views.PriceRow{
		ID: p.ID, Provider: p.Provider, Pattern: p.Pattern, Match: p.Match, EffectiveFrom: p.EffectiveFrom,
		Input: p.InputPico, Output: p.OutputPico, CacheWrite5m: p.CacheWrite5mPico,
		CacheWrite1h: p.CacheWrite1hPico, CacheRead: p.CacheReadPico, TierThreshold: p.TierThreshold, Note: p.Note,
	}
}

// nowMicro is the current time at PostgreSQL's precision, so a row read back compares
// equal to what was written.
func nowMicro() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
