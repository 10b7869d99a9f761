package web

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/billing"
	"github.com/tollgate/tollgate/internal/money"
	"github.com/tollgate/tollgate/views"
)

// maxAdjustNano bounds one adjustment: $1,000,000 either way catches a slipped digit.
const maxAdjustNano = 1_000_000 * money.NanosPerUSD

// userAdjust credits or debits a user's wallet with an `adjust` ledger entry. Its
// reference is the form's nonce, so a form sent twice (a double click, a reload) moves
// the balance once.
func (s *Server) userAdjust(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, ok := idParam(r)
	if !ok {
		s.notFound(w, r)
		return
	}
	form := views.AdjustForm{
		Amount: strings.TrimSpace(r.PostFormValue("amount")),
		Note:   strings.TrimSpace(r.PostFormValue("note")),
		Nonce:  r.PostFormValue("nonce"),
	}
	errs := map[string]string{}
	amount, err := parseSignedUSD(form.Amount)
	switch {
	case err != nil || amount == 0:
		errs["amount"] = "Enter a non-zero amount in dollars, e.g. 10 or -2.50."
	case amount > maxAdjustNano || amount < -maxAdjustNano:
		errs["amount"] = "One adjustment moves at most $1,000,000."
	}
	switch {
	case form.Note == "":
		errs["note"] = "Say why: the note is shown to the user and kept in the audit log."
	case utf8.RuneCountInString(form.Note) > 200:
		errs["note"] = "Keep the note under 200 characters."
	}
	if !validNonce(form.Nonce) {
		form.Nonce = newNonce()
		errs[""] = "The form had expired. Check the amount and send it again."
	}
	if len(errs) > 0 {
		form.Errors = errs
		s.renderUser(w, r, http.StatusUnprocessableEntity, id, form)
		return
	}

	admin := currentUser(r).ID
	ref := "adjust:" + form.Nonce
	applied := false
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := s.q.UserGetByID(ctx, tx, id); err != nil {
			return err
		}
		posted, err := billing.Post(ctx, tx, billing.Entry{
			UserID: id, Amount: amount, Kind: "adjust", Ref: ref, Note: form.Note, ActorID: &admin,
		})
		if applied = posted.Applied; err != nil || !applied {
			return err
		}
		return s.auditAdmin(ctx, tx, r, "user.balance_adjust", "user", strconv.FormatInt(id, 10), map[string]any{
			"amount_nano": amount, "note": form.Note, "ref": ref,
		})
	})
	if errors.Is(err, pgx.ErrNoRows) {
		s.notFound(w, r)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if applied {
		s.refreshBalance(ctx, id)
		s.flash(r, "success", "Balance adjusted by "+signedUSD(amount)+".")
	} else {
		s.flash(r, "success", "This adjustment was applied already; the balance was not changed again.")
	}
	http.Redirect(w, r, "/admin/users/"+strconv.FormatInt(id, 10), http.StatusSeeOther)
}

func signedUSD(nano int64) string {
	if nano > 0 {
		return "+" + money.FormatUSD(nano)
	}
	return money.FormatUSD(nano)
}
