package web

import (
	"net/http"

	"github.com/tollgate/tollgate/views"
)

// priceNew shows the form that adds a price rule.
func (s *Server) priceNew(w http.ResponseWriter, r *http.Request) {
	s.page(w, r, http.StatusOK, "Add a price", "admin", views.PriceNewContent(views.PriceForm{Provider: "anthropic", Match: "exact"}))
}
