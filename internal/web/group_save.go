package web

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/invalidate"
	"github.com/tollgate/tollgate/views"
)

// groupSave stores a group's settings, factors and pools in one audited transaction,
// then tells every proxy: the price snapshot (factors), the account snapshot (pools)
// and the cached keys of every affected user (the group's default concurrency).
func (s *Server) groupSave(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, ok := idParam(r)
	if !ok {
		s.notFound(w, r)
		return
	}
	d, choices, err := s.groupPage(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		s.notFound(w, r)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	g, valid := parseGroupForm(r, &d.Form, choices)
	if !valid {
		s.page(w, r, http.StatusUnprocessableEntity, "Group "+d.Form.Name, "admin", views.GroupContent(d))
		return
	}
	var events []invalidate.Event
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		before, err := s.q.GroupPriceFactorListByGroup(ctx, tx, id)
		if err != nil {
			return err
		}
		if _, err := s.q.GroupUpdate(ctx, tx, sqlc.GroupUpdateParams{ID: id, Description: g.description, DefaultConcurrency: g.concurrency}); err != nil {
			return err
		}
		for _, f := range g.factors {
			f.GroupID = id
			if err := s.q.GroupPriceFactorUpsert(ctx, tx, f); err != nil {
				return err
			}
		}
		keep := append([]int64{}, g.pools...) // never nil: NULL would detach nothing
		if err := s.q.GroupPoolDetachOthers(ctx, tx, sqlc.GroupPoolDetachOthersParams{GroupID: id, PoolIds: keep}); err != nil {
			return err
		}
		for _, p := range g.pools {
			if err := s.q.GroupPoolAttach(ctx, tx, sqlc.GroupPoolAttachParams{GroupID: id, PoolID: p}); err != nil {
				return err
			}
		}
		// The group's users' keys are cached with the group's settings: each user's
		// cache entries go, as do the price and account snapshots.
		users, err := s.q.UserIDListAffectedByGroup(ctx, tx, id)
		if err != nil {
			return err
		}
		events = []invalidate.Event{{Kind: invalidate.Prices}, {Kind: invalidate.Accounts}}
		for _, u := range users {
			events = append(events, invalidate.UserEvent(u))
		}
		if err := invalidate.Record(ctx, tx, events...); err != nil {
			return err
		}
		return s.auditAdmin(ctx, tx, r, "group.update", "group", strconv.FormatInt(id, 10), map[string]any{
			"description": g.description, "default_concurrency": g.concurrency,
			"factors": g.factors, "factors_before": before, "pools": g.pools,
		})
	})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.publish(ctx, events...)
	s.flash(r, "success", "Group “"+d.Form.Name+"” saved. Proxies apply it to the next requests.")
	http.Redirect(w, r, "/admin/groups/"+strconv.FormatInt(id, 10), http.StatusSeeOther)
}
