// Package invalidate tells every proxy that cached configuration changed. The web app
// publishes after it commits a change; proxies drop the affected cache entries. Redis
// pub/sub is fire-and-forget, so caches also expire on their own (a missed message costs
// staleness bounded by the cache TTL, never correctness of money).
package invalidate

import (
	"context"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Kind says which cache an event concerns.
type Kind string

// The kinds of change.
const (
	Key      Kind = "key"      // ID: hex of the key hash
	User     Kind = "user"     // ID: user id (its keys, balance, group)
	Accounts Kind = "accounts" // ID: empty; the account/pool/group snapshot
	Prices   Kind = "prices"   // ID: empty; the price catalogue
)

// Event is one change.
type Event struct {
	Kind Kind
	ID   string
}

// Channel is the pub/sub channel under a Redis key prefix.
func Channel(prefix string) string { return prefix + "invalidate" }

// Publish announces a change to every proxy.
func Publish(ctx context.Context, rdb redis.UniversalClient, prefix string, ev Event) error {
	return rdb.Publish(ctx, Channel(prefix), string(ev.Kind)+":"+ev.ID).Err()
}

// UserEvent is the event for a user's change.
func UserEvent(userID int64) Event { return Event{Kind: User, ID: strconv.FormatInt(userID, 10)} }

// Parse reads a published message.
func Parse(msg string) (Event, bool) {
	k, id, ok := strings.Cut(msg, ":")
	if !ok {
		return Event{}, false
	}
	return Event{Kind: Kind(k), ID: id}, true
}
