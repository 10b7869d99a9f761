package web

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/views"
)

// Session keys.
const (
	sessionUserID       = "user_id"
	sessionFlashSuccess = "flash_success"
	sessionFlashError   = "flash_error"
)

// newSessionManager keeps sessions in PostgreSQL (the sessions table), so any web
// instance serves any user. A session ends after 12 idle hours or 7 days at most.
func newSessionManager(store scs.Store, secure bool, onError func(http.ResponseWriter, *http.Request, error)) *scs.SessionManager {
	sm := scs.New()
	sm.Store = store
	sm.IdleTimeout = 12 * time.Hour
	sm.Lifetime = 7 * 24 * time.Hour
	sm.Cookie.Name = "tollgate_session"
	if secure {
		// The __Host- prefix makes browsers refuse the cookie unless it is Secure, has
		// Path=/ and no Domain, so a sibling subdomain cannot plant a session.
		sm.Cookie.Name = "__Host-tollgate_session"
	}
	sm.Cookie.Path = "/"
	sm.Cookie.HttpOnly = true
	sm.Cookie.SameSite = http.SameSiteLaxMode
	sm.Cookie.Secure = secure
	sm.ErrorFunc = onError
	return sm
}

type (
	userKey          struct{}
	sessionLoadedKey struct{} // set once the session is available to the request
)

// loadUser puts the signed-in user, if any, in the request context. A session whose
// user is gone or disabled is signed out here, so disabling a user ends their sessions
// on their next request.
func (s *Server) loadUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		ctx = context.WithValue(ctx, sessionLoadedKey{}, true)
		r = r.WithContext(ctx)
		id := s.sessions.GetInt64(ctx, sessionUserID)
		if id == 0 {
			next.ServeHTTP(w, r)
			return
		}
		user, err := s.q.UserGetByID(ctx, s.db, id)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			s.serverError(w, r, err)
			return
		}
		if errors.Is(err, pgx.ErrNoRows) || user.Status != "active" {
			if err := s.sessions.RenewToken(ctx); err != nil {
				s.serverError(w, r, err)
				return
			}
			s.sessions.Remove(ctx, sessionUserID)
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, userKey{}, &user)))
	})
}

// currentUser is the signed-in user, or nil.
func currentUser(r *http.Request) *sqlc.User {
	u, _ := r.Context().Value(userKey{}).(*sqlc.User)
	return u
}

// requireLogin sends anonymous visitors to the sign-in page.
func (s *Server) requireLogin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if currentUser(r) != nil {
			next.ServeHTTP(w, r)
			return
		}
		if isHTMX(r) {
			// htmx follows HX-Redirect with a full page load.
			w.Header().Set("HX-Redirect", "/login")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})
}

// adminOnly lets only admins through. Others get a 404, the same as for a page that does
// not exist, so the console does not advertise itself.
func (s *Server) adminOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u := currentUser(r); u == nil || u.Role != "admin" {
			s.notFound(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// flash stores a message shown once on the next page.
func (s *Server) flash(r *http.Request, kind, message string) {
	key := sessionFlashSuccess
	if kind == "error" {
		key = sessionFlashError
	}
	s.sessions.Put(r.Context(), key, message)
}

// popFlashes takes the pending messages out of the session. Pages served outside the
// session middleware (a 404 for an unknown path) have none.
func (s *Server) popFlashes(r *http.Request) []views.Flash {
	if loaded, _ := r.Context().Value(sessionLoadedKey{}).(bool); !loaded {
		return nil
	}
	var out []views.Flash
	if m := s.sessions.PopString(r.Context(), sessionFlashSuccess); m != "" {
		out = append(out, views.Flash{Kind: "success", Message: m})
	}
	if m := s.sessions.PopString(r.Context(), sessionFlashError); m != "" {
		out = append(out, views.Flash{Kind: "error", Message: m})
	}
	return out
}
