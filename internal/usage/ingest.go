package usage

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
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
// (kind usage, ref "usage:<batch>:<user>"), and the events it paid for are inserted
// already linked to it. The rows the events name are checked once for the batch
// (checkReferences), and the batch's sums are added to the hourly rollup (hourlySums), in
// the same transaction.
//
// The ledger rows come first, so that each event row is written once: linking the rows
// after inserting them (as this did before) rewrote every row and its five index entries,
// half of PostgreSQL's work per request under load. The debits are therefore computed
// from the events not stored yet, read inside the transaction; if another ingester stores
// one of them in between (a batch claimed from a worker that was only slow), the insert
// skips it, the counts differ, and the transaction is rolled back with errIngestRace for
// the caller to retry: nothing is ever debited without its event row.
func Ingest(ctx context.Context, pool *pgxpool.Pool, events []Event) (IngestResult, error) {
	res := IngestResult{Debits: map[int64]int64{}, Balances: map[int64]int64{}}
	if len(events) == 0 {
		return res, nil
	}
	batch := batchID()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		q := sqlc.New()
		fresh, err := unstored(ctx, q, tx, events)
		if err != nil || len(fresh) == 0 {
			return err
		}
		if err := checkReferences(ctx, q, tx, fresh); err != nil {
			return err
		}
		count := map[int64]int{}
		for _, e := range fresh {
			if e.BilledNano > 0 {
				res.Debits[e.UserID] += e.BilledNano
				count[e.UserID]++
			}
		}
		entries := make([]billing.Entry, 0, len(res.Debits))
		for u, debit := range res.Debits {
			entries = append(entries, billing.Entry{
				UserID: u, Amount: -debit, Kind: "usage",
				Ref:  fmt.Sprintf("usage:%s:%d", batch, u),
				Note: requestsNote(count[u]),
			})
		}
		// One statement for all the batch's users, which PostMany locks in id order.
		posted, err := billing.PostMany(ctx, tx, entries)
		if err != nil {
			return err
		}
		ledgerRow := make(map[int64]int64, len(entries))
		for i, p := range posted {
			u := entries[i].UserID
			if !p.Applied { // the ref is random per batch: only a replayed batch id gets here
				return fmt.Errorf("ledger entry %s exists already", entries[i].Ref)
			}
			ledgerRow[u], res.Balances[u] = p.Row.ID, p.Balance
		}
		rows, err := q.UsageEventInsertBatch(ctx, tx, params(fresh, ledgerRow))
		if err != nil {
			return fmt.Errorf("insert usage events: %w", err)
		}
		if len(rows) != len(fresh) {
			return errIngestRace
		}
		res.Inserted = len(rows)
		if err := q.UsageHourlyAdd(ctx, tx, hourlySums(fresh)); err != nil {
			return fmt.Errorf("add usage events to the hourly rollup: %w", err)
		}
		return nil
	})
	if err != nil {
		return IngestResult{}, err
	}
	return res, nil
}

// errIngestRace: another ingester stored some of the batch's events while this one ran;
// retrying the batch skips them.
var errIngestRace = errors.New("some usage events of the batch were stored meanwhile by another ingester; the batch is retried")

// errUnknownReference: an event names a user, key, group, account or price that does not
// exist. It refuses the whole batch; the consumer then stores the events one by one and
// dead-letters those that name one (isDataError).
var errUnknownReference = errors.New("usage event names a row that does not exist")

// references are the rows a usage event names, checked once per batch by
// UsageEventReferencesFound (migration 0004 explains why they are not foreign keys).
var references = [...]struct {
	table string
	id    func(*Event) int64
}{
	{"users", func(e *Event) int64 { return e.UserID }},
	{"api_keys", func(e *Event) int64 { return e.KeyID }},
	{"groups", func(e *Event) int64 { return e.GroupID }},
	{"accounts", func(e *Event) int64 { return e.AccountID }},
	{"prices", func(e *Event) int64 { return e.PriceID }},
}

// checkReferences makes sure every row the events name exists and locks it FOR KEY SHARE
// until the transaction ends, as the foreign keys did, with one query per batch.
func checkReferences(ctx context.Context, q *sqlc.Queries, tx pgx.Tx, events []Event) error {
	var want [len(references)][]int64
	for i, r := range references {
		seen := make(map[int64]bool, 4)
		for j := range events {
			if id := r.id(&events[j]); !seen[id] {
				seen[id] = true
				want[i] = append(want[i], id)
			}
		}
	}
	row, err := q.UsageEventReferencesFound(ctx, tx, sqlc.UsageEventReferencesFoundParams{
		UserIds: want[0], ApiKeyIds: want[1], GroupIds: want[2], AccountIds: want[3], PriceIds: want[4],
	})
	if err != nil {
		return fmt.Errorf("check the rows usage events name: %w", err)
	}
	found := [len(references)][]int64{row.Users, row.ApiKeys, row.Groups, row.Accounts, row.Prices}
	for i, r := range references {
		if len(found[i]) == len(want[i]) {
			continue
		}
		exists := make(map[int64]bool, len(found[i]))
		for _, id := range found[i] {
			exists[id] = true
		}
		for _, id := range want[i] {
			if !exists[id] {
				return fmt.Errorf("%w: %s id %d", errUnknownReference, r.table, id)
			}
		}
	}
	return nil
}

// unstored returns the events whose request id is not stored yet, each request id once
// (the first of duplicates within the batch).
func unstored(ctx context.Context, q *sqlc.Queries, tx pgx.Tx, events []Event) ([]Event, error) {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.RequestID
	}
	stored, err := q.UsageEventExistingRequestIDs(ctx, tx, ids)
	if err != nil {
		return nil, fmt.Errorf("look up stored usage events: %w", err)
	}
	seen := make(map[string]bool, len(events)+len(stored))
	for _, id := range stored {
		seen[id] = true
	}
	fresh := make([]Event, 0, len(events)-len(stored))
	for _, e := range events {
		if !seen[e.RequestID] {
			seen[e.RequestID] = true
			fresh = append(fresh, e)
		}
	}
	return fresh, nil
}

// hourKey is a row of the hourly rollup; hourSums are its counts.
type hourKey struct {
	hour               time.Time
	user, key, account int64
	model              string
}

type hourSums struct {
	requests, input, output, cacheWrite, cacheRead, official, billed int64
}

// hourlySums adds the events up per row of the hourly rollup (UTC hour, user, key,
// account, model requested), in the rows' order: concurrent ingesters then lock the
// rows they share in the same order and cannot deadlock on them.
//
// The rollup used to be rebuilt from usage_events every minute for the last two hours:
// a cost that grows with the traffic of those hours (at 1,000 requests a second, seven
// million rows aggregated every minute). Added here, in the transaction that stores the
// events, it costs one statement per batch and stays exact, since the events and their
// sums are written together, once (usage_events is append-only).
func hourlySums(events []Event) sqlc.UsageHourlyAddParams {
	sums := make(map[hourKey]*hourSums, 4)
	for _, e := range events {
		k := hourKey{e.Time.UTC().Truncate(time.Hour), e.UserID, e.KeyID, e.AccountID, e.ModelRequested}
		h := sums[k]
		if h == nil {
			h = &hourSums{}
			sums[k] = h
		}
		h.requests++
		h.input += e.Usage.Input
		h.output += e.Usage.Output
		h.cacheWrite += e.Usage.CacheWrite5m + e.Usage.CacheWrite1h
		h.cacheRead += e.Usage.CacheRead
		h.official += e.OfficialNano
		h.billed += e.BilledNano
	}
	keys := make([]hourKey, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b hourKey) int {
		return cmp.Or(a.hour.Compare(b.hour), cmp.Compare(a.user, b.user), cmp.Compare(a.key, b.key),
			cmp.Compare(a.account, b.account), cmp.Compare(a.model, b.model))
	})
	var p sqlc.UsageHourlyAddParams
	for _, k := range keys {
		h := sums[k]
		p.Hour = append(p.Hour, k.hour)
		p.UserID = append(p.UserID, k.user)
		p.APIKeyID = append(p.APIKeyID, k.key)
		p.AccountID = append(p.AccountID, k.account)
		p.Model = append(p.Model, k.model)
		p.Requests = append(p.Requests, h.requests)
		p.InputTokens = append(p.InputTokens, h.input)
		p.OutputTokens = append(p.OutputTokens, h.output)
		p.CacheWriteTokens = append(p.CacheWriteTokens, h.cacheWrite)
		p.CacheReadTokens = append(p.CacheReadTokens, h.cacheRead)
		p.OfficialCostNano = append(p.OfficialCostNano, h.official)
		p.BilledCostNano = append(p.BilledCostNano, h.billed)
	}
	return p
}

// params lays the events out as the insert's column arrays; ledgerRow maps a user to the
// ledger row that debits the batch's billed events (unbilled events link to none).
func params(events []Event, ledgerRow map[int64]int64) sqlc.UsageEventInsertBatchParams {
	n := len(events)
	p := sqlc.UsageEventInsertBatchParams{
		RequestID: make([]string, 0, n), CreatedAt: make([]time.Time, 0, n), WalletTxID: make([]int64, 0, n),
	}
	for _, e := range events {
		var wtx int64
		if e.BilledNano > 0 {
			wtx = ledgerRow[e.UserID]
		}
		p.WalletTxID = append(p.WalletTxID, wtx)
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
