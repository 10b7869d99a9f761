// Package usage records what upstreams served: the proxy appends one event per upstream
// attempt that consumed tokens to a durable Redis stream, and the worker ingests the
// stream into PostgreSQL, debiting wallets in the same transaction.
package usage

import (
	"context"
	"encoding/json"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/billing"
)

// Event is one billed upstream attempt. Costs are computed by the proxy when the attempt
// completes (from its price snapshot) and stored with the price and factor used, so
// every debit can be explained later.
type Event struct {
	RequestID      string        `json:"rid"`
	Time           time.Time     `json:"t"`
	UserID         int64         `json:"uid"`
	KeyID          int64         `json:"kid"`
	GroupID        int64         `json:"gid"`
	AccountID      int64         `json:"aid"`
	Provider       string        `json:"prov"`
	Endpoint       string        `json:"ep"`
	ModelRequested string        `json:"model"`
	ModelUpstream  string        `json:"umodel"`
	Usage          billing.Usage `json:"usage"`
	OfficialNano   int64         `json:"official"`
	BilledNano     int64         `json:"billed"`
	FactorNum      int64         `json:"fnum"`
	FactorDen      int64         `json:"fden"`
	PriceID        int64         `json:"pid"`
	FXRateMicro    int64         `json:"fx,omitempty"`
	Status         int           `json:"status"`
	Stream         bool          `json:"stream"`
	TTFBMillis     int           `json:"ttfb"`
	DurationMillis int           `json:"dur"`
	ClientIP       string        `json:"ip,omitempty"`
	UserAgent      string        `json:"ua,omitempty"`
	ErrorClass     string        `json:"err,omitempty"`
	Attempt        int           `json:"attempt"`
}

// StreamKey is the Redis stream the proxy appends to, under the deployment's key prefix.
func StreamKey(prefix string) string { return prefix + "usage" }

// ConsumerGroup is the Redis consumer group every worker joins.
const ConsumerGroup = "ingest"

// StreamField is the single field of each stream entry; its value is the event's JSON.
const StreamField = "e"

// Append adds events to the usage stream in one pipeline (the spool's way back in; the
// proxy's normal path appends inside its completion script).
func Append(ctx context.Context, rdb redis.UniversalClient, prefix string, evs []Event) error {
	pipe := rdb.Pipeline()
	for _, ev := range evs {
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(prefix), Values: []any{StreamField, b}})
	}
	_, err := pipe.Exec(ctx)
	return err
}
