package web

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/a-h/templ"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/db"
	"github.com/tollgate/tollgate/views"
)

// isHTMX reports whether htmx sent the request (and so wants a fragment).
func isHTMX(r *http.Request) bool { return r.Header.Get("HX-Request") == "true" }

// page renders content inside the base layout.
func (s *Server) page(w http.ResponseWriter, r *http.Request, status int, title, nav string, content templ.Component) {
	l := views.Layout{Title: title, Nav: nav, Flashes: s.popFlashes(r)}
	if u := currentUser(r); u != nil {
		l.User = &views.CurrentUser{Email: u.Email, IsAdmin: u.Role == "admin"}
	}
	s.render(w, r, status, views.Page(l, content))
}

// render writes a component. It renders into memory first, so a failure mid-way becomes
// an error page instead of half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	var buf bytes.Buffer
	if err := c.Render(r.Context(), &buf); err != nil {
		s.serverError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Add("Vary", "HX-Request")
	w.WriteHeader(status)
	w.Write(buf.Bytes()) //nolint:errcheck // the client went away
}

// serverError is the one place failed requests are logged. The user gets a page that
// says what they can do; the log gets the detail and the request id to find it by.
func (s *Server) serverError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client left; nobody is there to read an answer
	}
	status, title, msg := http.StatusInternalServerError, "Something went wrong",
		"Tollgate could not complete this request. Please try again; if it keeps happening, tell your operator the request ID below."
	if unavailable(err) {
		status, title, msg = http.StatusServiceUnavailable, "Temporarily unavailable",
			"Tollgate cannot reach its database or cache right now. Nothing was changed. Please try again in a minute."
		w.Header().Set("Retry-After", "30")
	}
	s.log.ErrorContext(r.Context(), "request failed",
		"request_id", middleware.GetReqID(r.Context()),
		"method", r.Method, "path", r.URL.Path, "status", status, "error", err)
	s.errorPage(w, r, status, title, msg)
}

// errorPage renders a friendly error without logging. It must not fail, so it renders
// directly and never calls back into serverError.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	l := views.Layout{Title: title}
	if u := currentUser(r); u != nil {
		l.User = &views.CurrentUser{Email: u.Email, IsAdmin: u.Role == "admin"}
	}
	content := views.ErrorContent(views.Error{Status: status, Title: title, Message: msg, RequestID: middleware.GetReqID(r.Context())})
	var buf bytes.Buffer
	if err := views.Page(l, content).Render(context.WithoutCancel(r.Context()), &buf); err != nil {
		http.Error(w, title+": "+msg, status)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes()) //nolint:errcheck // the client went away
}

// unavailable reports whether err means a backing service (PostgreSQL, Redis) could not
// be reached, as opposed to a bug or a bad query.
func unavailable(err error) bool {
	return db.Unavailable(err) || errors.Is(err, redis.ErrClosed)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.errorPage(w, r, http.StatusNotFound, "Page not found", "There is nothing at this address. Check the link, or start again from the dashboard.")
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	s.errorPage(w, r, http.StatusMethodNotAllowed, "Not allowed", "This page cannot be used that way.")
}

func (s *Server) crossOriginDenied(w http.ResponseWriter, r *http.Request) {
	s.log.WarnContext(r.Context(), "cross-origin request refused",
		"request_id", middleware.GetReqID(r.Context()), "method", r.Method, "path", r.URL.Path,
		"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
	s.errorPage(w, r, http.StatusForbidden, "Request refused",
		"This form was sent from another site, so Tollgate refused it. Open Tollgate directly and try again.")
}

// retryAfterSeconds renders a Retry-After value, at least 1.
func retryAfterSeconds(secs float64) string {
	if secs < 1 {
		secs = 1
	}
	return strconv.Itoa(int(secs + 0.999))
}
