// Package usage records what upstreams served: the proxy appends one event per upstream
// attempt that consumed tokens to a durable Redis stream, and the worker ingests the
// stream into PostgreSQL, debiting wallets in the same transaction.
package usage

import (
	"context"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/limit"
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
	// Late marks an event that reached the stream without a completion moving the Redis
	// counters it counts in (the user's balance snapshot, the key's and the user's spend
	// counters): a replay from the spool or from a dead proxy's journal (Append). Once it
	// is stored, the worker deletes those counters, so that the next admission reloads
	// them from the ledger and the usage events, which then include it.
	Late bool `json:"late,omitempty"`
}

// StreamKey is the Redis stream the proxy appends to, under the deployment's key prefix.
func StreamKey(prefix string) string { return limit.UsageStream(prefix) }

// ConsumerGroup is the Redis consumer group every worker joins.
const ConsumerGroup = "ingest"

// StreamField is the single field of each stream entry; its value is the event's JSON.
const StreamField = "e"

// Append adds events to the usage stream in one transaction (the spool's and the
// journal's way back in; the proxy's normal path appends inside its completion script).
// Each is appended Late: no completion moved its counters. Its debit is added to the
// user's and the key's pending sums (limit.PendingKey, KeyPendingKey), as a completion's
// is, so that a balance snapshot loaded before a worker stores it subtracts it (and a
// spend counter adds it).
func Append(ctx context.Context, rdb redis.UniversalClient, prefix string, evs []Event) error {
	pipe := rdb.TxPipeline()
	for _, ev := range evs {
		ev.Late = true
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		values := []any{StreamField, b}
		if ev.BilledNano > 0 {
			// Whether the key has a spending cap is not known here: a replay always counts
			// in the key's sum too.
			pend, keyPend := limit.PendingKey(prefix, ev.UserID), limit.KeyPendingKey(prefix, ev.KeyID)
			values = append(values, limit.PendingField, ev.BilledNano, limit.PendingKeyField, pend, limit.KeyPendingKeyField, keyPend)
			pipe.IncrBy(ctx, pend, ev.BilledNano)
			pipe.IncrBy(ctx, keyPend, ev.BilledNano)
		}
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(prefix), Values: values})
	}
	_, err := pipe.Exec(ctx)
	return err
}

// AppendJSON appends the event as JSON, the same document encoding/json makes of it
// (TestAppendJSON decodes both and compares) at a fraction of the cost: the proxy encodes
// one per request.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"rid":`...)
	b = appendString(b, e.RequestID)
	b = append(b, `,"t":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = appendInt(b, `","uid":`, e.UserID)
	b = appendInt(b, `,"kid":`, e.KeyID)
	b = appendInt(b, `,"gid":`, e.GroupID)
	b = appendInt(b, `,"aid":`, e.AccountID)
	b = append(b, `,"prov":`...)
	b = appendString(b, e.Provider)
	b = append(b, `,"ep":`...)
	b = appendString(b, e.Endpoint)
	b = append(b, `,"model":`...)
	b = appendString(b, e.ModelRequested)
	b = append(b, `,"umodel":`...)
	b = appendString(b, e.ModelUpstream)
	u := e.Usage
	b = appendInt(b, `,"usage":{"input":`, u.Input)
	b = appendInt(b, `,"output":`, u.Output)
	b = appendInt(b, `,"cache_write_5m":`, u.CacheWrite5m)
	b = appendInt(b, `,"cache_write_1h":`, u.CacheWrite1h)
	b = appendInt(b, `,"cache_read":`, u.CacheRead)
	if u.Reasoning != 0 {
		b = appendInt(b, `,"reasoning":`, u.Reasoning)
	}
	b = appendInt(b, `},"official":`, e.OfficialNano)
	b = appendInt(b, `,"billed":`, e.BilledNano)
	b = appendInt(b, `,"fnum":`, e.FactorNum)
	b = appendInt(b, `,"fden":`, e.FactorDen)
	b = appendInt(b, `,"pid":`, e.PriceID)
	if e.FXRateMicro != 0 {
		b = appendInt(b, `,"fx":`, e.FXRateMicro)
	}
	b = appendInt(b, `,"status":`, int64(e.Status))
	b = append(b, `,"stream":`...)
	b = strconv.AppendBool(b, e.Stream)
	b = appendInt(b, `,"ttfb":`, int64(e.TTFBMillis))
	b = appendInt(b, `,"dur":`, int64(e.DurationMillis))
	if e.ClientIP != "" {
		b = append(b, `,"ip":`...)
		b = appendString(b, e.ClientIP)
	}
	if e.UserAgent != "" {
		b = append(b, `,"ua":`...)
		b = appendString(b, e.UserAgent)
	}
	if e.ErrorClass != "" {
		b = append(b, `,"err":`...)
		b = appendString(b, e.ErrorClass)
	}
	b = appendInt(b, `,"attempt":`, int64(e.Attempt))
	if e.Late {
		b = append(b, `,"late":true`...)
	}
	return append(b, '}')
}

func appendInt(b []byte, key string, v int64) []byte {
	return strconv.AppendInt(append(b, key...), v, 10)
}

// appendString appends s as a JSON string. Like encoding/json it writes invalid UTF-8 as
// U+FFFD; it leaves <, > and & as they are (encoding/json escapes them for HTML; both
// decode to the same string).
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				i += size
				start = i
				continue
			}
			if r == '\u2028' || r == '\u2029' {
				b = append(b, s[start:i]...)
				b = append(b, `\u202`...)
				b = append(b, hex[r&0xf])
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
