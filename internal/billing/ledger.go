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

// Post appends the entry and moves the cached balance, inside the caller's transaction
// (the only way the cached balance may change). applied is false when an entry with the
// same (kind, ref) already existed; the balance is then left alone.
func Post(ctx context.Context, tx pgx.Tx, e Entry) (row sqlc.WalletTx, applied bool, err error) {
	if e.Amount == 0 {
		return row, false, errors.New("ledger entry with zero amount")
	}
	q := sqlc.New()
	row, err = q.WalletTxInsert(ctx, tx, sqlc.WalletTxInsertParams{
		UserID: e.UserID, AmountNano: e.Amount, Kind: e.Kind, Ref: e.Ref, Note: e.Note, ActorID: e.ActorID,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return row, false, nil
	}
	if err != nil {
		return row, false, fmt.Errorf("append %s entry %q for user %d: %w", e.Kind, e.Ref, e.UserID, err)
	}
	if _, err := q.UserBalanceAdd(ctx, tx, sqlc.UserBalanceAddParams{ID: e.UserID, AmountNano: e.Amount}); err != nil {
		return row, false, fmt.Errorf("update balance of user %d: %w", e.UserID, err)
	}
	return row, true, nil
}
