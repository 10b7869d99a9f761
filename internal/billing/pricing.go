package billing

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/db/sqlc"
)

// Quote is the priced outcome of one attempt.
type Quote struct {
	PriceID      int64
	Factor       Factor
	FXRateMicro  int64 // the USD/CNY rate an RMB peg used; 0 without a peg
	OfficialNano int64
	BilledNano   int64
}

// Pricing is the proxy's in-process snapshot of the price catalogue and group factors.
type Pricing struct {
	db  sqlc.DBTX
	cur atomic.Pointer[pricingSnapshot]
}

type pricingSnapshot struct {
	cat     *Catalogue
	factors map[factorKey]sqlc.GroupPriceFactor
	fx      int64 // latest USD/CNY in micro-yuan; 0 when none was ever fetched
}

type factorKey struct {
	group    int64
	provider string
}

// NewPricing returns an empty snapshot store over db; call Reload before use.
func NewPricing(db sqlc.DBTX) *Pricing { return &Pricing{db: db} }

// Reload reads the catalogue and the group factors.
func (p *Pricing) Reload(ctx context.Context) error {
	q := sqlc.New()
	rows, err := q.PriceList(ctx, p.db)
	if err != nil {
		return fmt.Errorf("load prices: %w", err)
	}
	fs, err := q.GroupPriceFactorList(ctx, p.db)
	if err != nil {
		return fmt.Errorf("load group price factors: %w", err)
	}
	snap := &pricingSnapshot{cat: NewCatalogue(rows), factors: map[factorKey]sqlc.GroupPriceFactor{}}
	for _, f := range fs {
		snap.factors[factorKey{f.GroupID, f.Provider}] = f
	}
	// The last good rate is used however old it is; the console flags a stale one.
	switch rate, err := q.FxRateLatest(ctx, p.db); {
	case err == nil:
		snap.fx = rate.RateMicro
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("load exchange rate: %w", err)
	}
	p.cur.Store(snap)
	return nil
}

// Priced reports whether a request for the model by the group can be priced now
// (checked before forwarding, so an unpriced model is refused instead of served free).
func (p *Pricing) Priced(groupID int64, provider, model string, at time.Time) error {
	_, _, _, err := p.rate(groupID, provider, model, at)
	return err
}

// Quote prices usage for a group at time at.
func (p *Pricing) Quote(groupID int64, provider, model string, u Usage, at time.Time) (Quote, error) {
	price, f, fx, err := p.rate(groupID, provider, model, at)
	if err != nil {
		return Quote{}, err
	}
	q := Quote{PriceID: price.ID, Factor: f, FXRateMicro: fx}
	q.OfficialNano, q.BilledNano = Cost(price.RatesFor(u), u, f)
	return q, nil
}

// rate finds the price row and the group's factor (with the exchange rate it used).
func (p *Pricing) rate(groupID int64, provider, model string, at time.Time) (*Price, Factor, int64, error) {
	snap := p.cur.Load()
	if snap == nil {
		return nil, Factor{}, 0, fmt.Errorf("%w: price catalogue not loaded", ErrUnpriced)
	}
	price, err := snap.cat.Lookup(provider, model, at)
	if err != nil {
		return nil, Factor{}, 0, err
	}
	gf, ok := snap.factors[factorKey{groupID, provider}]
	switch {
	case !ok:
		return price, One, 0, nil
	case gf.PegRmbMicro == nil:
		return price, MultiplierFactor(gf.MultiplierPpm), 0, nil
	case snap.fx <= 0:
		// A pegged group needs the exchange rate; without one it is refused rather than
		// billed at a guessed rate.
		return nil, Factor{}, 0, fmt.Errorf("%w: group %d is priced in RMB and no USD/CNY rate has been fetched yet", ErrUnpriced, groupID)
	default:
		return price, PegFactor(*gf.PegRmbMicro, snap.fx, gf.MultiplierPpm), snap.fx, nil
	}
}

// Models lists the models with a current exact price for a provider, sorted.
func (p *Pricing) Models(provider string) []string {
	snap := p.cur.Load()
	if snap == nil {
		return []string{}
	}
	return snap.cat.Models(provider)
}
