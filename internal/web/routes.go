package web

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/tollgate/tollgate/static"
)

// routes is the whole route table of cmd/web.
func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.RequestID, s.logRequests, s.recoverPanics, withDeadline, s.securityHeaders, s.crossOrigin.Handler)
	r.NotFound(s.notFound)
	r.MethodNotAllowed(s.methodNotAllowed)

	// Public, without a session.
	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)
	r.Handle("/static/*", static.Handler())
	r.Get("/favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, static.URL("favicon.svg"), http.StatusMovedPermanently)
	})

	r.Group(func(r chi.Router) {
		r.Use(s.sessions.LoadAndSave, s.loadUser)

		r.Get("/login", s.loginShow)
		r.Post("/login", s.loginSubmit)
		r.Post("/logout", s.logoutSubmit)

		r.Group(func(r chi.Router) {
			r.Use(s.requireLogin)

			r.Get("/", s.dashboardShow)
			r.Get("/keys", s.keyList)
			r.Post("/keys", s.keyCreate)
			r.Post("/keys/{id}/revoke", s.keyRevoke)
			r.Get("/usage", s.usageList)
			r.Get("/wallet", s.walletShow)
			r.Post("/wallet/redeem", s.walletRedeem)

			// The admin console; every page behind it is admin-only.
			r.Route("/admin", func(r chi.Router) {
				r.Use(s.adminOnly)
				r.Get("/", s.adminHome)

				r.Get("/users", s.userList)
				r.Get("/users/{id}", s.userShow)
				r.Post("/users/{id}/adjust", s.userAdjust)

				r.Get("/groups", s.groupList)
				r.Post("/groups", s.groupCreate)
				r.Get("/groups/{id}", s.groupShow)
				r.Post("/groups/{id}", s.groupSave)

				r.Get("/prices", s.priceList)
				r.Post("/prices", s.priceCreate)
				r.Get("/prices/new", s.priceNew)
				r.Get("/prices/{id}", s.priceShow)
				r.Post("/prices/{id}", s.priceSave)

				r.Get("/redeem", s.redeemList)
				r.Post("/redeem", s.redeemGenerate)
				r.Post("/redeem/download", s.redeemDownload)
				r.Post("/redeem/disable", s.redeemDisable)
			})
		})
	})
	return r
}
