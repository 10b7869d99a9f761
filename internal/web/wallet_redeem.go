package web

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/money"
	"github.com/tollgate/tollgate/views"
)

// walletRedeem credits a redeem code to the signed-in user. Attempts are rate-limited
// per user and per client IP, so codes cannot be guessed by trying.
func (s *Server) walletRedeem(w http.ResponseWriter, r *http.Request) {
	ctx, user := r.Context(), currentUser(r)
	code := strings.TrimSpace(r.PostFormValue("code"))
	form := views.RedeemForm{Code: code}
	if code == "" {
		form.Error = "Enter the code you received, e.g. TG-XXXX-XXXX-XXXX."
		s.renderWallet(w, r, http.StatusUnprocessableEntity, form)
		return
	}
	verdict, err := s.redeemThrottle.Attempt(ctx, clientIP(r), user.Email)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if !verdict.Allowed {
		minutes := int(math.Ceil(verdict.RetryAfter.Minutes()))
		form.Error = fmt.Sprintf("Too many attempts. Please wait %d minute%s and try again.", minutes, plural(minutes))
		w.Header().Set("Retry-After", retryAfterSeconds(verdict.RetryAfter.Seconds()))
		s.renderWallet(w, r, http.StatusTooManyRequests, form)
		return
	}

	credited, err := billing.Redeem(ctx, s.db, code, user.ID)
	if msg := redeemProblem(err); msg != "" {
		form.Error = msg
		s.renderWallet(w, r, http.StatusUnprocessableEntity, form)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.refreshBalance(ctx, user.ID)
	done := "Code redeemed: " + money.FormatUSD(credited) + " added to your balance."
	if isHTMX(r) {
		s.renderWallet(w, r, http.StatusOK, views.RedeemForm{Success: done})
		return
	}
	s.flash(r, "success", done)
	http.Redirect(w, r, "/wallet", http.StatusSeeOther)
}

// redeemProblem says why a code was refused, in the user's words; "" for other errors.
func redeemProblem(err error) string {
	switch {
	case errors.Is(err, billing.ErrCodeUnknown):
		return "This code is not valid. Check that you typed it correctly."
	case errors.Is(err, billing.ErrCodeAlreadyRedeemed):
		return "You have already redeemed this code."
	case errors.Is(err, billing.ErrCodeExpired):
		return "This code has expired."
	case errors.Is(err, billing.ErrCodeDisabled):
		return "This code has been withdrawn and no longer works."
	case errors.Is(err, billing.ErrCodeUsedUp):
		return "This code has been used as many times as it allows."
	}
	return ""
}
