package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/db/sqlc"
)

// Errors of Authenticate that the user may be told about.
var (
	// ErrInvalidCredentials covers both an unknown email and a wrong password, so the
	// answer does not reveal which accounts exist.
	ErrInvalidCredentials = errors.New("invalid email or password")
	// ErrDisabled is returned only after the password matched.
	ErrDisabled = errors.New("account disabled")
)

// dummyHash is checked against when the email is unknown, so an unknown email takes as
// long as a wrong password.
var dummyHash = sync.OnceValue(func() string {
	h, err := HashPassword("tollgate-timing-equaliser")
	if err != nil {
		panic(err)
	}
	return h
})

// NormalizeEmail is the form emails are stored and looked up in.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// Authenticate checks an email and password and returns the user they sign in as.
// Disabled users get ErrDisabled; everything else that is wrong gets
// ErrInvalidCredentials. Other errors are failures to reach the database.
func Authenticate(ctx context.Context, db sqlc.DBTX, email, password string) (sqlc.User, error) {
	q := sqlc.New()
	email = NormalizeEmail(email)
	if email == "" || password == "" {
		_ = CheckPassword(dummyHash(), password)
		return sqlc.User{}, ErrInvalidCredentials
	}
	user, err := q.UserGetByEmail(ctx, db, email)
	if errors.Is(err, pgx.ErrNoRows) {
		_ = CheckPassword(dummyHash(), password)
		return sqlc.User{}, ErrInvalidCredentials
	}
	if err != nil {
		return sqlc.User{}, fmt.Errorf("look up user by email: %w", err)
	}
	if err := CheckPassword(user.PasswordHash, password); err != nil {
		if errors.Is(err, ErrMismatch) {
			return sqlc.User{}, ErrInvalidCredentials
		}
		return sqlc.User{}, fmt.Errorf("check password of user %d: %w", user.ID, err)
	}
	if user.Status != "active" {
		return sqlc.User{}, ErrDisabled
	}
	if err := q.UserSetLastLogin(ctx, db, user.ID); err != nil {
		return sqlc.User{}, fmt.Errorf("record login of user %d: %w", user.ID, err)
	}
	return user, nil
}
