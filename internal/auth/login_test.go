package auth

import (
	"context"
	"errors"
	"testing"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/testenv"
)

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.DB(t)
	q := sqlc.New()
	g, err := q.GroupInsert(ctx, pool, sqlc.GroupInsertParams{Name: "default", IsDefault: true})
	if err != nil {
		t.Fatal(err)
	}
	hash, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	for _, email := range []string{"ada@example.com", "bob@example.com"} {
		if _, err := q.UserInsert(ctx, pool, sqlc.UserInsertParams{Email: email, PasswordHash: hash, Role: "user", GroupID: g.ID}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, "UPDATE users SET status = 'disabled' WHERE email = 'bob@example.com'"); err != nil {
		t.Fatal(err)
	}

	u, err := Authenticate(ctx, pool, "  Ada@Example.com", "correct horse battery")
	if err != nil {
		t.Fatalf("valid login: %v", err)
	}
	if u.Email != "ada@example.com" {
		t.Errorf("signed in as %s", u.Email)
	}
	if got, _ := q.UserGetByID(ctx, pool, u.ID); got.LastLoginAt == nil {
		t.Error("last login not recorded")
	}

	for _, tc := range []struct {
		email, password string
		want            error
	}{
		{"ada@example.com", "wrong", ErrInvalidCredentials},
		{"nobody@example.com", "correct horse battery", ErrInvalidCredentials},
		{"", "", ErrInvalidCredentials},
		{"bob@example.com", "wrong", ErrInvalidCredentials}, // disabled is told only to the owner
		{"bob@example.com", "correct horse battery", ErrDisabled},
	} {
		if _, err := Authenticate(ctx, pool, tc.email, tc.password); !errors.Is(err, tc.want) {
			t.Errorf("Authenticate(%q, %q) = %v, want %v", tc.email, tc.password, err, tc.want)
		}
	}
}
