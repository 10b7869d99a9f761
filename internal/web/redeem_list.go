package web

import (
	"net/http"
	"time"

	"github.com/tollgate/tollgate/views"
)

// redeemBatchRows is how many batches the page lists.
const redeemBatchRows = 200

func (s *Server) redeemList(w http.ResponseWriter, r *http.Request) {
	s.renderRedeemAdmin(w, r, http.StatusOK, views.RedeemBatchForm{Count: "10", Uses: "1"}, nil)
}

// renderRedeemAdmin renders the redeem codes page with the form as typed and, right
// after a generation, the new codes.
func (s *Server) renderRedeemAdmin(w http.ResponseWriter, r *http.Request, status int, form views.RedeemBatchForm, generated *views.GeneratedCodes) {
	batches, err := s.q.RedeemBatchList(r.Context(), s.db, redeemBatchRows)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	d := views.AdminRedeem{Form: form, Generated: generated}
	now := time.Now()
	for _, b := range batches {
		d.Batches = append(d.Batches, views.RedeemBatchRow{
			Batch: b.Batch, Codes: b.Codes, ValueNano: b.ValueNano, UsesPerCode: int64(b.UsesPerCode),
			Used: b.Used, MaxUses: b.MaxUses, ExpiresAt: b.ExpiresAt, CreatedAt: b.CreatedAt,
			Disabled: b.Disabled, Now: now,
		})
	}
	s.page(w, r, status, "Redeem codes", "admin", views.RedeemAdminContent(d))
}
