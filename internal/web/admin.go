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

// publish tells every proxy what changed, after the change committed. A lost message
// is logged, not returned: the change stands, and the proxies' snapshots refresh on
// their own within their TTL.
func (s *Server) publish(ctx context.Context, events ...invalidate.Event) {
	for _, ev := range events {
		if err := invalidate.Publish(ctx, s.rdb, s.redisPrefix, ev); err != nil {
			s.log.ErrorContext(ctx, "publish invalidation; proxies catch up when their snapshot expires",
				"request_id", middleware.GetReqID(ctx), "kind", ev.Kind, "id", ev.ID, "error", err)
			return // Redis is failing; the rest would fail the same way
		}
	}
}

// creditSnapshot moves the user's balance snapshot after a committed ledger entry. A
// failure is logged: the snapshot is re-read from the ledger when it expires.
func (s *Server) creditSnapshot(ctx context.Context, userID, amountNano int64) {
	if err := s.gate.Credit(ctx, userID, amountNano); err != nil {
		s.log.ErrorContext(ctx, "move balance snapshot; admission sees the change when the snapshot expires",
			"request_id", middleware.GetReqID(ctx), "user_id", userID, "amount_nano", amountNano, "error", err)
	}
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
