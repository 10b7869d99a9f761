package web

import (
	"errors"
	"fmt"
	"math"
	"net/http"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/tollgate/tollgate/internal/auth"
	"github.com/tollgate/tollgate/views"
)

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	email, password := r.PostFormValue("email"), r.PostFormValue("password")
	form := views.Login{Email: email}

	verdict, err := s.loginThrottle.Attempt(ctx, clientIP(r), email)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if !verdict.Allowed {
		minutes := int(math.Ceil(verdict.RetryAfter.Minutes()))
		form.Error = fmt.Sprintf("Too many sign-in attempts. Please wait %d minute%s and try again.", minutes, plural(minutes))
		w.Header().Set("Retry-After", retryAfterSeconds(verdict.RetryAfter.Seconds()))
		s.page(w, r, http.StatusTooManyRequests, "Sign in", "", views.LoginContent(form))
		return
	}

	user, err := auth.Authenticate(ctx, s.db, email, password)
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials):
		form.Error = "Incorrect email or password."
		s.page(w, r, http.StatusUnauthorized, "Sign in", "", views.LoginContent(form))
		return
	case errors.Is(err, auth.ErrDisabled):
		form.Error = "This account is disabled. Contact your Tollgate operator."
		s.page(w, r, http.StatusForbidden, "Sign in", "", views.LoginContent(form))
		return
	case err != nil:
		s.serverError(w, r, err)
		return
	}

	if err := s.loginThrottle.Forgive(ctx, email); err != nil {
		// Not fatal: the counter expires with its window anyway.
		s.log.WarnContext(ctx, "clear login attempts", "request_id", middleware.GetReqID(ctx), "error", err)
	}
	// A new session token on every privilege change defeats session fixation.
	if err := s.sessions.RenewToken(ctx); err != nil {
		s.serverError(w, r, err)
		return
	}
	s.sessions.Put(ctx, sessionUserID, user.ID)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
