package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/invalidate"
	"github.com/tollgate/tollgate/views"
)

// Helpers shared by the admin console's handlers.

// auditAdmin records an admin's change in the transaction that makes it, so a change
// without its audit row cannot commit.
func (s *Server) auditAdmin(ctx context.Context, tx pgx.Tx, r *http.Request, action, targetType, targetID string, detail any) error {
	raw, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("encode audit detail of %s: %w", action, err)
	}
	actor := currentUser(r).ID
	err = s.q.AuditInsert(ctx, tx, sqlc.AuditInsertParams{
		ActorID: &actor, Action: action, TargetType: targetType, TargetID: targetID, Detail: raw, IP: clientIP(r),
	})
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

// publish tells every proxy what changed, after the change committed with its events
// recorded (invalidate.Record). A lost message is logged, not returned: the change
// stands, and the proxies read the recorded events within a second.
func (s *Server) publish(ctx context.Context, events ...invalidate.Event) {
	for _, ev := range events {
		if err := invalidate.Publish(ctx, s.rdb, s.redisPrefix, ev); err != nil {
			s.log.ErrorContext(ctx, "publish invalidation; proxies catch up when they read the recorded events",
				"request_id", middleware.GetReqID(ctx), "kind", ev.Kind, "id", ev.ID, "error", err)
			return // Redis is failing; the rest would fail the same way
		}
	}
}

// balanceRefreshFor is how long a failed snapshot drop is retried: the default
// BALANCE_SNAPSHOT_TTL, after which a snapshot from before the change has expired anyway.
const balanceRefreshFor = 15 * time.Minute

// refreshBalance makes the proxies' admission see a committed ledger entry at once: it
// drops the user's balance snapshot (limit.Gate.RefreshBalance). When Redis does not
// answer, the drop is retried every second in the background for balanceRefreshFor, so
// that a user who topped up during a Redis outage is not refused, for want of money, for
// up to a snapshot's lifetime after Redis returns. (A web process stopped meanwhile
// leaves it to the snapshot's expiry.)
func (s *Server) refreshBalance(ctx context.Context, userID int64) {
	err := s.gate.RefreshBalance(ctx, userID)
	if err == nil {
		return
	}
	s.log.WarnContext(ctx, "drop balance snapshot; retrying in the background",
		"request_id", middleware.GetReqID(ctx), "user_id", userID, "error", err)
	if _, running := s.refreshing.LoadOrStore(userID, true); running {
		return // the retry under way drops it: a drop covers every change before it
	}
	go func() {
		defer s.refreshing.Delete(userID)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for deadline := time.Now().Add(balanceRefreshFor); time.Now().Before(deadline); {
			select {
			case <-s.life.Done():
				return
			case <-t.C:
			}
			rctx, cancel := context.WithTimeout(s.life, 2*time.Second)
			err = s.gate.RefreshBalance(rctx, userID)
			cancel()
			if err == nil {
				s.log.Info("balance snapshot dropped after Redis returned", "user_id", userID)
				return
			}
		}
		s.log.Error("balance snapshot not dropped; admission sees the change when it expires", "user_id", userID, "error", err)
	}()
}

// fxStatus is the exchange rate as the console shows it.
func (s *Server) fxStatus(ctx context.Context) (views.FXStatus, error) {
	now := time.Now()
	rate, at, stale, err := billing.FXStatus(ctx, s.db, now)
	if errors.Is(err, billing.ErrNoFXRate) {
		return views.FXStatus{Now: now}, nil
	}
	if err != nil {
		return views.FXStatus{}, err
	}
	return views.FXStatus{Known: true, RateMicro: rate, FetchedAt: at, Stale: stale, Now: now}, nil
}

// idParam reads a numeric id from the route.
func idParam(r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	return id, err == nil && id > 0
}

// isUniqueViolation reports whether err is a UNIQUE constraint failure.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
