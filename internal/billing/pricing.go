package billing

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/internal/db/sqlc"
)

// Quote is the priced outcome of one attempt.
type Quote struct {
	PriceID      int64
	Factor       Factor
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
	p.cur.Store(snap)
	return nil
}

// Priced reports whether the model has a price now (checked before forwarding, so an
// unpriced model is refused instead of served for free).
func (p *Pricing) Priced(provider, model string, at time.Time) error {
	snap := p.cur.Load()
	if snap == nil {
		return fmt.Errorf("%w: price catalogue not loaded", ErrUnpriced)
	}
	_, err := snap.cat.Lookup(provider, model, at)
	return err
}

// Quote prices usage for a group at time at.
func (p *Pricing) Quote(groupID int64, provider, model string, u Usage, at time.Time) (Quote, error) {
	snap := p.cur.Load()
	if snap == nil {
		return Quote{}, fmt.Errorf("%w: price catalogue not loaded", ErrUnpriced)
	}
	price, err := snap.cat.Lookup(provider, model, at)
	if err != nil {
		return Quote{}, err
	}
	f := One
	if gf, ok := snap.factors[factorKey{groupID, provider}]; ok {
		if gf.PegRmbMicro != nil {
			// An RMB peg needs the live exchange rate (the billing issue brings it);
			// until then a pegged group is refused rather than billed at a guessed rate.
			return Quote{}, fmt.Errorf("%w: group %d uses an RMB peg, which needs an exchange rate", ErrUnpriced, groupID)
		}
		f = MultiplierFactor(gf.MultiplierPpm)
	}
	q := Quote{PriceID: price.ID, Factor: f}
	q.OfficialNano, q.BilledNano = Cost(price.RatesFor(u), u, f)
	return q, nil
}

// Models lists the models with a current exact price for a provider, sorted.
func (p *Pricing) Models(provider string) []string {
	snap := p.cur.Load()
	if snap == nil {
		return []string{}
	}
	return snap.cat.Models(provider)
}
