package invalidate

import (
	"context"
	"fmt"
	"strconv"

	"github.com/tollgate/tollgate/internal/db/sqlc"
)

// Record writes events to PostgreSQL (cache_events) for every proxy's Feed, in the
// caller's transaction, so that a change and its event commit together. The Redis
// message (Publish), sent after the commit, brings the change at once; the row brings it
// within a second even when the message is lost.
func Record(ctx context.Context, db sqlc.DBTX, events ...Event) error {
	if len(events) == 0 {
		return nil
	}
	kinds, refs := make([]string, len(events)), make([]string, len(events))
	for i, ev := range events {
		kinds[i], refs[i] = string(ev.Kind), ev.ID
	}
	if err := sqlc.New().CacheEventsRecord(ctx, db, sqlc.CacheEventsRecordParams{Kinds: kinds, Refs: refs}); err != nil {
		return fmt.Errorf("record %d cache invalidations: %w", len(events), err)
	}
	return nil
}

// Feed reads the events recorded since it started, each once, in the order of their ids
// within a read. It is not safe for concurrent use.
//
// Rows become visible at their transaction's commit, not in id order, so the feed keeps
// the oldest transaction running at its last read (since) and reads every row of that
// transaction and later ones again, skipping those it has returned (seen: the ids the
// last read returned; a row not among them is older than since and never read again).
type Feed struct {
	db    sqlc.DBTX
	since string // xid8, as decimal text; "" before Start
	seen  map[int64]bool
}

// NewFeed returns a feed on db; Start it before reading the state the events change.
func NewFeed(db sqlc.DBTX) *Feed { return &Feed{db: db} }

// Start marks now as the feed's beginning: events committed before are not returned.
// Call it before loading what the events invalidate, so that a change committed between
// the load and the start cannot be missed.
//
// The oldest transaction running now may be older than events already committed (any
// transaction of the cluster counts), so those events are read once here and counted as
// seen, not returned by the first Poll.
func (f *Feed) Start(ctx context.Context) error {
	if f.since != "" {
		return nil
	}
	rows, err := sqlc.New().CacheEventsSince(ctx, f.db, maxXid8)
	if err != nil {
		return fmt.Errorf("start cache invalidation feed: %w", err)
	}
	f.since = rows[0].Xmin
	if _, err := f.Poll(ctx); err != nil {
		f.since = ""
		return fmt.Errorf("start cache invalidation feed: %w", err)
	}
	return nil
}

// maxXid8 matches no transaction: the largest 64-bit transaction id.
const maxXid8 = "18446744073709551615"

// Poll returns the events committed since the last poll (or Start).
func (f *Feed) Poll(ctx context.Context) ([]Event, error) {
	if f.since == "" {
		if err := f.Start(ctx); err != nil {
			return nil, err
		}
	}
	rows, err := sqlc.New().CacheEventsSince(ctx, f.db, f.since)
	if err != nil {
		return nil, fmt.Errorf("read cache invalidations: %w", err)
	}
	var out []Event
	seen := make(map[int64]bool, len(rows))
	for _, r := range rows {
		if r.ID == nil {
			continue // no row: the LEFT JOIN's snapshot line
		}
		seen[*r.ID] = true
		if !f.seen[*r.ID] {
			out = append(out, Event{Kind: Kind(*r.Kind), ID: *r.Ref})
		}
	}
	f.seen = seen
	// The snapshot's xmin never goes back, but keep the larger in case a replica or a
	// restored database says otherwise.
	if later(rows[0].Xmin, f.since) {
		f.since = rows[0].Xmin
	}
	return out, nil
}

// later reports whether transaction id a (decimal text) is after b.
func later(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	return errA == nil && errB == nil && x > y
}
