package billing

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/db/sqlc"
)

// Entry is one ledger movement. Amount is signed nano-USD: credits positive, debits
// negative. (Kind, Ref) identifies it: posting the same entry twice changes nothing.
type Entry struct {
	UserID  int64
	Amount  int64
	Kind    string // topup|usage|adjust|refund|redeem
	Ref     string
	Note    string
	ActorID *int64
}

// Posted is what Post did.
type Posted struct {
	Row     sqlc.WalletTx
	Balance int64 // the user's cached balance after the entry (0 when not applied)
	// Applied is false when an entry with the same (kind, ref) already existed; the
	// balance was then left alone.
	Applied bool
}

// Post appends the entry and moves the cached balance, inside the caller's transaction
// (the only way the cached balance may change).
func Post(ctx context.Context, tx pgx.Tx, e Entry) (Posted, error) {
	if e.Amount == 0 {
		return Posted{}, errors.New("ledger entry with zero amount")
	}
	q := sqlc.New()
	row, err := q.WalletTxInsert(ctx, tx, sqlc.WalletTxInsertParams{
		UserID: e.UserID, AmountNano: e.Amount, Kind: e.Kind, Ref: e.Ref, Note: e.Note, ActorID: e.ActorID,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Posted{}, nil
	}
	if err != nil {
		return Posted{}, fmt.Errorf("append %s entry %q for user %d: %w", e.Kind, e.Ref, e.UserID, err)
	}
	bal, err := q.UserBalanceAdd(ctx, tx, sqlc.UserBalanceAddParams{ID: e.UserID, AmountNano: e.Amount})
	if err != nil {
		return Posted{}, fmt.Errorf("update balance of user %d: %w", e.UserID, err)
	}
	return Posted{Row: row, Balance: bal, Applied: true}, nil
}
