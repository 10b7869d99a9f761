package web

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/internal/apikey"
	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/invalidate"
)

// maxKeyName bounds a key's label.
const maxKeyName = 100

// validKeyName trims a submitted key name and says what is wrong with it, if anything.
func validKeyName(raw string) (string, string) {
	name := strings.TrimSpace(raw)
	switch {
	case name == "":
		return name, "Give the key a name, so you can tell it apart from your other keys."
	case utf8.RuneCountInString(name) > maxKeyName:
		return name, fmt.Sprintf("Keep the name under %d characters.", maxKeyName)
	}
	return name, ""
}

// createKey generates a key for the user and stores only its hash, with an audit row in
// the same transaction. The plaintext in the result is shown once and never stored.
func (s *Server) createKey(ctx context.Context, userID int64, name, ip string) (sqlc.APIKey, string, error) {
	gen := apikey.Generate()
	ev := invalidate.Event{Kind: invalidate.Key, ID: hex.EncodeToString(gen.Hash)}
	var key sqlc.APIKey
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		key, err = s.q.APIKeyInsert(ctx, tx, sqlc.APIKeyInsertParams{
			UserID: userID, Name: name, DisplayPrefix: gen.DisplayPrefix, Hash: gen.Hash,
		})
		if err != nil {
			return fmt.Errorf("insert api key: %w", err)
		}
		if err := invalidate.Record(ctx, tx, ev); err != nil {
			return err
		}
		return s.audit(ctx, tx, userID, "api_key.create", key, ip)
	})
	if err != nil {
		return sqlc.APIKey{}, "", fmt.Errorf("create api key for user %d: %w", userID, err)
	}
	// Announce the new key so proxies add it to their set of existing keys at once (a
	// missed announcement only delays it to their next read of the recorded event).
	if err := invalidate.Publish(ctx, s.rdb, s.redisPrefix, ev); err != nil {
		s.log.Warn("announce new api key", "key_id", key.ID, "err", err)
	}
	return key, gen.Plaintext, nil
}

// errKeyNotFound is returned for a key that does not exist or belongs to someone else.
var errKeyNotFound = errors.New("api key not found")

// revokeKey revokes one of the user's keys, audited and recorded for the proxies
// (invalidate.Record) in the same transaction, then tells every proxy at once to drop
// the key from its cache. Revoking a revoked key changes nothing. A failed announcement
// is logged, not returned: the revocation stands, and the proxies read the recorded
// event within a second.
func (s *Server) revokeKey(ctx context.Context, userID, keyID int64, ip string) (sqlc.APIKey, error) {
	var key sqlc.APIKey
	var ev invalidate.Event
	changed := false
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		key, err = s.q.APIKeyRevoke(ctx, tx, sqlc.APIKeyRevokeParams{ID: keyID, UserID: userID})
		if errors.Is(err, pgx.ErrNoRows) {
			key, err = s.q.APIKeyGetForUser(ctx, tx, sqlc.APIKeyGetForUserParams{ID: keyID, UserID: userID})
			if errors.Is(err, pgx.ErrNoRows) {
				return errKeyNotFound
			}
			return err // already revoked, or a failure
		}
		if err != nil {
			return fmt.Errorf("revoke api key %d: %w", keyID, err)
		}
		changed = true
		ev = invalidate.Event{Kind: invalidate.Key, ID: hex.EncodeToString(key.Hash)}
		if err := invalidate.Record(ctx, tx, ev); err != nil {
			return err
		}
		return s.audit(ctx, tx, userID, "api_key.revoke", key, ip)
	})
	if err != nil {
		return sqlc.APIKey{}, err
	}
	if changed {
		if err := invalidate.Publish(ctx, s.rdb, s.redisPrefix, ev); err != nil {
			s.log.ErrorContext(ctx, "publish key invalidation; proxies drop the key when they read its recorded event",
				"request_id", middleware.GetReqID(ctx), "api_key_id", key.ID, "error", err)
		}
	}
	return key, nil
}

// audit records an action of a user on one of their keys.
func (s *Server) audit(ctx context.Context, tx pgx.Tx, actorID int64, action string, key sqlc.APIKey, ip string) error {
	detail, err := json.Marshal(map[string]any{"name": key.Name, "display_prefix": key.DisplayPrefix, "user_id": key.UserID})
	if err != nil {
		return err
	}
	err = s.q.AuditInsert(ctx, tx, sqlc.AuditInsertParams{
		ActorID: &actorID, Action: action, TargetType: "api_key",
		TargetID: strconv.FormatInt(key.ID, 10), Detail: detail, IP: ip,
	})
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}
