package usage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/db/sqlc"
)

// IngestResult says what one Ingest call changed.
type IngestResult struct {
	Inserted int             // events new to the database
	Debits   map[int64]int64 // user id → nano-USD debited (positive)
	Balances map[int64]int64 // user id → balance after the debit
}

// Ingest writes a batch of events and their wallet debits in one transaction. It is
// idempotent by request id: events already stored are skipped and not debited again,
// so a batch may be replayed after any crash. Each user gets one ledger row per batch
// (kind usage, ref "usage:<batch>:<user>"), linked from the events it paid for.
func Ingest(ctx context.Context, pool *pgxpool.Pool, events []Event) (IngestResult, error) {
	res := IngestResult{Debits: map[int64]int64{}, Balances: map[int64]int64{}}
	if len(events) == 0 {
		return res, nil
	}
	p := params(events)
	batch := batchID()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		q := sqlc.New()
		rows, err := q.UsageEventInsertBatch(ctx, tx, p)
		if err != nil {
			return fmt.Errorf("insert usage events: %w", err)
		}
		res.Inserted = len(rows)
		ids := map[int64][]int64{}
		for _, r := range rows {
			if r.BilledCostNano > 0 {
				res.Debits[r.UserID] += r.BilledCostNano
				ids[r.UserID] = append(ids[r.UserID], r.ID)
			}
		}
		users := make([]int64, 0, len(res.Debits))
		for u := range res.Debits {
			users = append(users, u)
		}
		// A fixed order keeps concurrent ingesters from deadlocking on users rows.
		sort.Slice(users, func(i, j int) bool { return users[i] < users[j] })
		for _, u := range users {
			row, _, err := billing.Post(ctx, tx, billing.Entry{
				UserID: u, Amount: -res.Debits[u], Kind: "usage",
				Ref:  fmt.Sprintf("usage:%s:%d", batch, u),
				Note: requestsNote(len(ids[u])),
			})
			if err != nil {
				return err
			}
			if err := q.UsageEventLinkWalletTx(ctx, tx, sqlc.UsageEventLinkWalletTxParams{WalletTxID: &row.ID, IDs: ids[u]}); err != nil {
				return fmt.Errorf("link usage events to ledger: %w", err)
			}
			if res.Balances[u], err = q.UserBalanceGet(ctx, tx, u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return IngestResult{}, err
	}
	return res, nil
}

func params(events []Event) sqlc.UsageEventInsertBatchParams {
	n := len(events)
	p := sqlc.UsageEventInsertBatchParams{
		RequestID: make([]string, 0, n), CreatedAt: make([]time.Time, 0, n),
	}
	for _, e := range events {
		p.RequestID = append(p.RequestID, e.RequestID)
		p.CreatedAt = append(p.CreatedAt, e.Time)
		p.UserID = append(p.UserID, e.UserID)
		p.APIKeyID = append(p.APIKeyID, e.KeyID)
		p.GroupID = append(p.GroupID, e.GroupID)
		p.AccountID = append(p.AccountID, e.AccountID)
		p.Provider = append(p.Provider, e.Provider)
		p.Endpoint = append(p.Endpoint, e.Endpoint)
		p.ModelRequested = append(p.ModelRequested, e.ModelRequested)
		p.ModelUpstream = append(p.ModelUpstream, e.ModelUpstream)
		p.InputTokens = append(p.InputTokens, e.Usage.Input)
		p.OutputTokens = append(p.OutputTokens, e.Usage.Output)
		p.CacheWrite5mTokens = append(p.CacheWrite5mTokens, e.Usage.CacheWrite5m)
		p.CacheWrite1hTokens = append(p.CacheWrite1hTokens, e.Usage.CacheWrite1h)
		p.CacheReadTokens = append(p.CacheReadTokens, e.Usage.CacheRead)
		p.ReasoningTokens = append(p.ReasoningTokens, e.Usage.Reasoning)
		p.OfficialCostNano = append(p.OfficialCostNano, e.OfficialNano)
		p.BilledCostNano = append(p.BilledCostNano, e.BilledNano)
		p.FactorNum = append(p.FactorNum, e.FactorNum)
		p.FactorDen = append(p.FactorDen, e.FactorDen)
		p.PriceID = append(p.PriceID, e.PriceID)
		p.FxRateMicro = append(p.FxRateMicro, e.FXRateMicro)
		p.Status = append(p.Status, int32(e.Status))
		p.Stream = append(p.Stream, e.Stream)
		p.TtfbMs = append(p.TtfbMs, int32(e.TTFBMillis))
		p.DurationMs = append(p.DurationMs, int32(e.DurationMillis))
		p.ClientIP = append(p.ClientIP, e.ClientIP)
		p.UserAgent = append(p.UserAgent, e.UserAgent)
		p.ErrorClass = append(p.ErrorClass, e.ErrorClass)
		p.Attempt = append(p.Attempt, int32(max(e.Attempt, 1)))
	}
	return p
}

func batchID() string {
	b := make([]byte, 8)
	rand.Read(b) //nolint:errcheck // never fails
	return hex.EncodeToString(b)
}

func requestsNote(n int) string {
	if n == 1 {
		return "1 request"
	}
	return fmt.Sprintf("%d requests", n)
}
