package web

import (
	"net/http"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/views"
)

func (s *Server) groupList(w http.ResponseWriter, r *http.Request) {
	s.renderGroups(w, r, http.StatusOK, "", "")
}

// renderGroups renders the groups page, with the new-group form as typed and its error.
func (s *Server) renderGroups(w http.ResponseWriter, r *http.Request, status int, newName, problem string) {
	ctx := r.Context()
	groups, err := s.q.GroupList(ctx, s.db)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	factors, err := s.q.GroupPriceFactorList(ctx, s.db)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	pools, err := s.q.GroupPoolNames(ctx, s.db)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	counts, err := s.q.UserCountByGroup(ctx, s.db)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	fx, err := s.fxStatus(ctx)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	byGroup := map[int64][]sqlc.GroupPriceFactor{}
	for _, f := range factors {
		byGroup[f.GroupID] = append(byGroup[f.GroupID], f)
	}
	d := views.AdminGroups{FX: fx, NewName: newName, Error: problem}
	for _, g := range groups {
		row := views.GroupRow{
			ID: g.ID, Name: g.Name, Description: g.Description, IsDefault: g.IsDefault,
			DefaultConcurrency: g.DefaultConcurrency, Factors: groupFactors(byGroup[g.ID], fx),
		}
		for _, p := range pools {
			if p.GroupID == g.ID {
				row.Pools = append(row.Pools, p.Name)
			}
		}
		for _, c := range counts {
			if c.GroupID == g.ID {
				row.Users = c.Users
			}
		}
		d.Groups = append(d.Groups, row)
	}
	s.page(w, r, status, "Groups", "admin", views.GroupsContent(d))
}
