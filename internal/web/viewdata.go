package web

import (
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/views"
)

// Conversions from database rows to view data.

func keyRow(k sqlc.APIKey) views.KeyRow {
	return views.KeyRow{
		ID:            k.ID,
		Name:          k.Name,
		DisplayPrefix: k.DisplayPrefix,
		Status:        k.Status,
		CreatedAt:     k.CreatedAt,
		LastUsedAt:    k.LastUsedAt,
	}
}

func keyRows(keys []sqlc.APIKey) []views.KeyRow {
	out := make([]views.KeyRow, len(keys))
	for i, k := range keys {
		out[i] = keyRow(k)
	}
	return out
}

func usageRows(events []sqlc.UsageEventListByUserRow) []views.UsageRow {
	out := make([]views.UsageRow, len(events))
	for i, e := range events {
		out[i] = views.UsageRow{
			Time:             e.CreatedAt,
			KeyName:          e.KeyName,
			Model:            e.ModelRequested,
			InputTokens:      e.InputTokens,
			OutputTokens:     e.OutputTokens,
			CacheWriteTokens: e.CacheWrite5mTokens + e.CacheWrite1hTokens,
			CacheReadTokens:  e.CacheReadTokens,
			BilledNano:       e.BilledCostNano,
			Status:           e.Status,
		}
	}
	return out
}

func ledgerRows(txs []sqlc.WalletTx) []views.LedgerRow {
	out := make([]views.LedgerRow, len(txs))
	for i, t := range txs {
		out[i] = views.LedgerRow{Time: t.CreatedAt, Kind: t.Kind, AmountNano: t.AmountNano, Ref: t.Ref, Note: t.Note}
	}
	return out
}
