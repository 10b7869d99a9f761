package billing

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/db/sqlc"
)

// ErrUnpriced is returned for a model no price row covers. Such requests are refused:
// never free, never silently priced as another model.
var ErrUnpriced = errors.New("model has no price")

// Price is one row of the catalogue.
type Price struct {
	ID            int64
	Provider      string
	Pattern       string
	Prefix        bool
	EffectiveFrom time.Time
	Base          Rates
	TierThreshold int64 // 0: no long-context tier
	Above         Rates
}

// RatesFor returns the rates that apply to a request with this usage: the long-context
// rates for the whole request once its prompt exceeds the tier threshold.
func (p *Price) RatesFor(u Usage) Rates {
	if p.TierThreshold > 0 && u.Prompt() > p.TierThreshold {
		return p.Above
	}
	return p.Base
}

// Catalogue answers "what did model M cost at time T" from an in-memory snapshot.
type Catalogue struct {
	exact  map[string][]*Price // provider+"\x00"+model → rows by effective_from
	prefix map[string][]*Price // provider → prefix rows, longest pattern first, then newest
}

// NewCatalogue builds a catalogue from price rows.
func NewCatalogue(rows []sqlc.Price) *Catalogue {
	c := &Catalogue{exact: map[string][]*Price{}, prefix: map[string][]*Price{}}
	for _, r := range rows {
		p := priceFromRow(r)
		if p.Prefix {
			c.prefix[p.Provider] = append(c.prefix[p.Provider], p)
		} else {
			k := p.Provider + "\x00" + p.Pattern
			c.exact[k] = append(c.exact[k], p)
		}
	}
	for _, ps := range c.exact {
		sort.Slice(ps, func(i, j int) bool { return ps[i].EffectiveFrom.After(ps[j].EffectiveFrom) })
	}
	for _, ps := range c.prefix {
		sort.Slice(ps, func(i, j int) bool {
			if len(ps[i].Pattern) != len(ps[j].Pattern) {
				return len(ps[i].Pattern) > len(ps[j].Pattern)
			}
			return ps[i].EffectiveFrom.After(ps[j].EffectiveFrom)
		})
	}
	return c
}

// Lookup returns the price in force for the model at time at: an exact row beats a
// prefix row; among prefix rows the longest pattern wins; within a pattern the newest
// row not after at.
func (c *Catalogue) Lookup(provider, model string, at time.Time) (*Price, error) {
	for _, p := range c.exact[provider+"\x00"+model] {
		if !p.EffectiveFrom.After(at) {
			return p, nil
		}
	}
	for _, p := range c.prefix[provider] {
		if strings.HasPrefix(model, p.Pattern) && !p.EffectiveFrom.After(at) {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w: %s model %q", ErrUnpriced, provider, model)
}

// Models lists the exactly priced models of a provider, sorted.
func (c *Catalogue) Models(provider string) []string {
	out := []string{}
	for k := range c.exact {
		if p, m, _ := strings.Cut(k, "\x00"); p == provider {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out
}

func priceFromRow(r sqlc.Price) *Price {
	p := &Price{
		ID: r.ID, Provider: r.Provider, Pattern: r.Pattern, Prefix: r.Match == "prefix",
		EffectiveFrom: r.EffectiveFrom,
		Base: Rates{Input: r.InputPico, Output: r.OutputPico, CacheWrite5m: r.CacheWrite5mPico,
			CacheWrite1h: r.CacheWrite1hPico, CacheRead: r.CacheReadPico},
	}
	if r.TierThreshold != nil {
		p.TierThreshold = *r.TierThreshold
		p.Above = Rates{Input: deref(r.InputAbovePico, p.Base.Input), Output: deref(r.OutputAbovePico, p.Base.Output),
			CacheWrite5m: deref(r.CacheWrite5mAbovePico, p.Base.CacheWrite5m),
			CacheWrite1h: deref(r.CacheWrite1hAbovePico, p.Base.CacheWrite1h),
			CacheRead:    deref(r.CacheReadAbovePico, p.Base.CacheRead)}
	}
	return p
}

func deref(v *int64, def int64) int64 {
	if v == nil {
		return def
	}
	return *v
}

//go:embed default_prices.json
var defaultPricesJSON []byte

// defaultPrice is one entry of default_prices.json: public list prices in pico-USD per
// token, converted from the MIT-licensed snapshot in shared/reference/model-prices
// (synced 2026-07-24). Anthropic 1-hour cache writes are 2× input, as Anthropic lists;
// OpenAI and Gemini charge no premium for cache writes (priced as input). Gemini models
// the snapshot lists only under Vertex AI are taken at those (public, identical) prices.
type defaultPrice struct {
	Provider          string `json:"provider"`
	Model             string `json:"model"`
	Input             int64  `json:"input"`
	Output            int64  `json:"output"`
	CacheWrite5m      int64  `json:"cache_write_5m"`
	CacheWrite1h      int64  `json:"cache_write_1h"`
	CacheRead         int64  `json:"cache_read"`
	TierThreshold     *int64 `json:"tier_threshold"`
	InputAbove        *int64 `json:"input_above"`
	OutputAbove       *int64 `json:"output_above"`
	CacheWrite5mAbove *int64 `json:"cache_write_5m_above"`
	CacheWrite1hAbove *int64 `json:"cache_write_1h_above"`
	CacheReadAbove    *int64 `json:"cache_read_above"`
}

// DefaultCatalogueFrom is the effective time of the shipped catalogue. Fixed, so seeding
// twice inserts nothing new and an operator's later edit always wins.
var DefaultCatalogueFrom = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// SeedDefaultPrices inserts the shipped catalogue; rows that exist are left alone.
func SeedDefaultPrices(ctx context.Context, q *sqlc.Queries, db sqlc.DBTX) (inserted int, err error) {
	var list []defaultPrice
	if err := json.Unmarshal(defaultPricesJSON, &list); err != nil {
		return 0, fmt.Errorf("parse default price catalogue: %w", err)
	}
	for _, d := range list {
		_, err := q.PriceInsert(ctx, db, sqlc.PriceInsertParams{
			Provider: d.Provider, Pattern: d.Model, Match: "exact", EffectiveFrom: DefaultCatalogueFrom,
			InputPico: d.Input, OutputPico: d.Output, CacheWrite5mPico: d.CacheWrite5m,
			CacheWrite1hPico: d.CacheWrite1h, CacheReadPico: d.CacheRead, TierThreshold: d.TierThreshold,
			InputAbovePico: d.InputAbove, OutputAbovePico: d.OutputAbove,
			CacheWrite5mAbovePico: d.CacheWrite5mAbove, CacheWrite1hAbovePico: d.CacheWrite1hAbove,
			CacheReadAbovePico: d.CacheReadAbove, Note: "default catalogue (public list price)",
		})
		switch {
		case err == nil:
			inserted++
		case errors.Is(err, pgx.ErrNoRows): // ON CONFLICT DO NOTHING: already there
		default:
			return inserted, fmt.Errorf("insert default price %s/%s: %w", d.Provider, d.Model, err)
		}
	}
	return inserted, nil
}
