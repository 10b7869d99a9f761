// Package limit admits requests and completes them in Redis, one script call each:
// admission checks the user's balance snapshot (and, as the relay core grows,
// concurrency leases and rates); completion appends the usage event to the durable
// stream and moves the balance snapshot in the same atomic step.
package limit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

//go:embed admit.lua
var admitLua string

//go:embed complete.lua
var completeLua string

var (
	admitScript    = redis.NewScript(admitLua)
	completeScript = redis.NewScript(completeLua)
)

// BalanceLoader reads a user's balance from the ledger (PostgreSQL) on a snapshot miss.
type BalanceLoader func(ctx context.Context, userID int64) (int64, error)

// Gate is the Redis side of the hot path.
type Gate struct {
	rdb         redis.UniversalClient
	prefix      string
	loadBalance BalanceLoader
	sf          singleflight.Group
	// snapshotTTL bounds how long a balance snapshot lives before it is re-read from
	// the ledger, which heals any drift (e.g. a credit whose snapshot update was lost).
	snapshotTTL time.Duration
}

// NewGate returns a gate on rdb with keys under prefix.
func NewGate(rdb redis.UniversalClient, prefix string, loadBalance BalanceLoader) *Gate {
	return &Gate{rdb: rdb, prefix: prefix, loadBalance: loadBalance, snapshotTTL: 15 * time.Minute}
}

// Ticket identifies an admitted request.
type Ticket struct {
	UserID    int64
	KeyID     int64
	AccountID int64
}

// Refusal is a request refused by a limit; the relay renders it in the protocol's shape.
type Refusal struct {
	Status  int
	Type    string // Tollgate's own error type
	Message string
}

func (r *Refusal) Error() string { return r.Message }

// ErrUnavailable wraps Redis failures: the relay answers 503 rather than admitting
// requests with no limits (there is no silent unlimited mode).
var ErrUnavailable = errors.New("limits store unavailable")

// BalanceKey is the Redis key of a user's balance snapshot in nano-USD.
func (g *Gate) BalanceKey(userID int64) string {
	return g.prefix + "bal:" + strconv.FormatInt(userID, 10)
}

// Admit checks the request against the user's balance snapshot.
func (g *Gate) Admit(ctx context.Context, t Ticket) error {
	for try := 0; try < 2; try++ {
		res, err := admitScript.Run(ctx, g.rdb, []string{g.BalanceKey(t.UserID)}).Int64()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		switch res {
		case 1:
			return nil
		case 0:
			return &Refusal{Status: 402, Type: "tollgate_insufficient_balance",
				Message: "Tollgate: your balance is used up; top up your wallet to continue"}
		}
		// -1: no snapshot yet; load it from the ledger once (single-flight) and retry.
		if err := g.primeBalance(ctx, t.UserID); err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: balance snapshot did not settle", ErrUnavailable)
}

func (g *Gate) primeBalance(ctx context.Context, userID int64) error {
	_, err, _ := g.sf.Do(strconv.FormatInt(userID, 10), func() (any, error) {
		bal, err := g.loadBalance(ctx, userID)
		if err != nil {
			return nil, fmt.Errorf("load balance of user %d: %w", userID, err)
		}
		// NX: a snapshot someone else set meanwhile (and maybe already debited) wins.
		if err := g.rdb.SetNX(ctx, g.BalanceKey(userID), bal, g.snapshotTTL).Err(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return nil, nil
	})
	return err
}

// Complete records a finished attempt: the event (JSON) goes to the usage stream and the
// billed amount comes off the balance snapshot, atomically.
func (g *Gate) Complete(ctx context.Context, t Ticket, stream string, event []byte, billedNano int64) error {
	err := completeScript.Run(ctx, g.rdb, []string{stream, g.BalanceKey(t.UserID)}, event, billedNano).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Credit moves a user's balance snapshot after a committed ledger credit (top-up,
// refund, redeem) so admission sees it at once. Without a snapshot nothing is done: the
// next admission loads the ledger balance.
func (g *Gate) Credit(ctx context.Context, userID, amountNano int64) error {
	key := g.BalanceKey(userID)
	return g.rdb.Watch(ctx, func(tx *redis.Tx) error {
		n, err := tx.Exists(ctx, key).Result()
		if err != nil || n == 0 {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.IncrBy(ctx, key, amountNano)
			return nil
		})
		return err
	}, key)
}
