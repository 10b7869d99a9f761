package web

import (
	"context"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/money"
	"github.com/tollgate/tollgate/views"
)

// Limits of a group's factor inputs: wide enough for any real tier, narrow enough that
// a slipped decimal point is caught.
const (
	maxMultiplierPPM = 1000 * 1_000_000 // 1000×
	maxPegMicro      = 1000 * 1_000_000 // ¥1000 per $1
	maxConcurrency   = 1_000_000
)

// groupFactors turns a group's factor rows into one entry per provider (a missing row
// is factor 1), with the factor in force now at the exchange rate fx.
func groupFactors(rows []sqlc.GroupPriceFactor, fx views.FXStatus) []views.GroupFactor {
	byProvider := map[string]sqlc.GroupPriceFactor{}
	for _, f := range rows {
		byProvider[f.Provider] = f
	}
	out := make([]views.GroupFactor, 0, len(providers))
	for _, p := range providers {
		f, ok := byProvider[p]
		if !ok {
			f = sqlc.GroupPriceFactor{Provider: p, MultiplierPpm: 1_000_000}
		}
		gf := views.GroupFactor{Provider: p, Multiplier: views.FixedDecimal(f.MultiplierPpm, 6, 0)}
		if f.PegRmbMicro != nil {
			gf.Peg = views.FixedDecimal(*f.PegRmbMicro, 6, 2)
		}
		gf.Effective, gf.Example = effectiveFactor(f.MultiplierPpm, f.PegRmbMicro, fx)
		out = append(out, gf)
	}
	return out
}

// effectiveFactor describes the factor now and what an official $1 bills with it,
// computed with billing's own cost math so the console shows what requests pay.
func effectiveFactor(ppm int64, peg *int64, fx views.FXStatus) (factor, example string) {
	f := billing.MultiplierFactor(ppm)
	if peg != nil {
		if !fx.Known {
			return "no exchange rate yet", "requests of this provider cannot be priced"
		}
		f = billing.PegFactor(*peg, fx.RateMicro, ppm)
	}
	_, billed := billing.Cost(billing.Rates{Input: 1_000_000_000_000}, billing.Usage{Input: 1}, f) // $1 official
	factor = new(big.Rat).SetFrac64(f.Num, f.Den).FloatString(4)
	example = "$1.00 official bills " + money.FormatUSD(billed)
	if peg != nil {
		example += " (¥" + views.FixedDecimal(*peg, 6, 2) + " at ¥" + views.FixedDecimal(fx.RateMicro, 6, 4) + " per $1)"
	}
	return factor, example
}

// groupSave is a validated group form, ready to store.
type groupSave struct {
	description string
	concurrency int32
	factors     []sqlc.GroupPriceFactorUpsertParams
	pools       []int64
}

// parseGroupForm reads and checks the group form. choices are the pools that exist.
func parseGroupForm(r *http.Request, form *views.GroupForm, choices []sqlc.GroupPoolChoicesRow) (groupSave, bool) {
	errs := map[string]string{}
	form.Description = strings.TrimSpace(r.PostFormValue("description"))
	form.DefaultConcurrency = strings.TrimSpace(r.PostFormValue("default_concurrency"))
	g := groupSave{description: form.Description}
	if utf8.RuneCountInString(form.Description) > 200 {
		errs["description"] = "Keep the description under 200 characters."
	}
	if n, ok := parseCount(form.DefaultConcurrency, maxConcurrency); ok {
		g.concurrency = int32(n)
	} else {
		errs["default_concurrency"] = fmt.Sprintf("Enter a whole number from 0 (unlimited) to %d.", maxConcurrency)
	}
	form.Factors = form.Factors[:0]
	for _, p := range providers {
		gf := views.GroupFactor{
			Provider:   p,
			Multiplier: strings.TrimSpace(r.PostFormValue("multiplier_" + p)),
			Peg:        strings.TrimSpace(r.PostFormValue("peg_" + p)),
		}
		up := sqlc.GroupPriceFactorUpsertParams{Provider: p, MultiplierPpm: 1_000_000}
		if gf.Multiplier != "" {
			ppm, err := parseFixed(gf.Multiplier, 6)
			if err != nil || ppm <= 0 || ppm > maxMultiplierPPM {
				errs["multiplier_"+p] = "Enter a multiplier above 0 and up to 1000, e.g. 1.5."
			}
			up.MultiplierPpm = ppm
		}
		if gf.Peg != "" {
			micro, err := parseFixed(strings.TrimPrefix(gf.Peg, "¥"), 6)
			if err != nil || micro <= 0 || micro > maxPegMicro {
				errs["peg_"+p] = "Enter yuan per official dollar above 0, e.g. 2.00, or leave it empty for no peg."
			}
			up.PegRmbMicro = &micro
		}
		form.Factors = append(form.Factors, gf)
		g.factors = append(g.factors, up)
	}
	chosen := map[int64]bool{}
	for _, raw := range r.PostForm["pool"] {
		id, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			errs["pool"] = "Choose pools from the list."
			continue
		}
		chosen[id] = true
	}
	form.Pools = form.Pools[:0]
	for _, c := range choices {
		form.Pools = append(form.Pools, views.PoolChoice{ID: c.ID, Name: c.Name, Attached: chosen[c.ID]})
		if chosen[c.ID] {
			g.pools = append(g.pools, c.ID)
			delete(chosen, c.ID)
		}
	}
	if len(chosen) > 0 {
		errs["pool"] = "A chosen pool no longer exists. Reload the page and choose again."
	}
	if len(errs) > 0 {
		form.Errors = errs
		return g, false
	}
	return g, true
}

// groupPage loads a group's edit page as stored.
func (s *Server) groupPage(ctx context.Context, id int64) (views.AdminGroup, []sqlc.GroupPoolChoicesRow, error) {
	g, err := s.q.GroupGetByID(ctx, s.db, id)
	if err != nil {
		return views.AdminGroup{}, nil, err
	}
	factors, err := s.q.GroupPriceFactorListByGroup(ctx, s.db, id)
	if err != nil {
		return views.AdminGroup{}, nil, err
	}
	choices, err := s.q.GroupPoolChoices(ctx, s.db, id)
	if err != nil {
		return views.AdminGroup{}, nil, err
	}
	counts, err := s.q.UserCountByGroup(ctx, s.db)
	if err != nil {
		return views.AdminGroup{}, nil, err
	}
	fx, err := s.fxStatus(ctx)
	if err != nil {
		return views.AdminGroup{}, nil, err
	}
	d := views.AdminGroup{FX: fx, Form: views.GroupForm{
		ID: g.ID, Name: g.Name, IsDefault: g.IsDefault, Description: g.Description,
		DefaultConcurrency: strconv.Itoa(int(g.DefaultConcurrency)),
		Factors:            groupFactors(factors, fx),
	}}
	for _, c := range choices {
		d.Form.Pools = append(d.Form.Pools, views.PoolChoice{ID: c.ID, Name: c.Name, Attached: c.Attached})
	}
	for _, c := range counts {
		if c.GroupID == id {
			d.Users = c.Users
		}
	}
	return d, choices, nil
}
