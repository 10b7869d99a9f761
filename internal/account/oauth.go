package account

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/db/sqlc"
	"github.com/tollgate/tollgate/internal/invalidate"
	"github.com/tollgate/tollgate/internal/secret"
)

// OAuthClient is where and as whom a provider's refresh tokens are redeemed.
type OAuthClient struct {
	TokenURL string
	ClientID string
}

// Refresher redeems OAuth refresh tokens so that each is used exactly once cluster-wide:
// a Redis lock per account admits one refresher; everyone else waits for the new access
// token to appear in PostgreSQL. It serves the proxy (on a 401) and the worker (ahead of
// expiry).
type Refresher struct {
	pool    *pgxpool.Pool
	rdb     redis.UniversalClient
	prefix  string
	box     *secret.Box
	clients map[string]OAuthClient // by provider
	http    *http.Client
	log     *slog.Logger
}

// NewRefresher returns a refresher; clients maps provider → token endpoint and client id.
func NewRefresher(pool *pgxpool.Pool, rdb redis.UniversalClient, prefix string, box *secret.Box, clients map[string]OAuthClient, log *slog.Logger) *Refresher {
	return &Refresher{pool: pool, rdb: rdb, prefix: prefix, box: box, clients: clients,
		http: &http.Client{Timeout: 20 * time.Second}, log: log}
}

// ErrRefreshFailed means the provider refused the refresh token (or none is configured):
// the account needs an operator.
var ErrRefreshFailed = errors.New("oauth refresh failed")

const (
	refreshLockTTL = 30 * time.Second
	refreshWait    = 20 * time.Second
)

// Refresh returns a fresh credential for the account whose access token `rejected` was
// refused. If another process already refreshed it, that credential is returned without
// touching the provider.
func (r *Refresher) Refresh(ctx context.Context, accountID int64, rejected string) (Credential, error) {
	lockKey := r.prefix + "oauthlock:" + strconv.FormatInt(accountID, 10)
	token := make([]byte, 16)
	rand.Read(token) //nolint:errcheck
	owner := hex.EncodeToString(token)
	deadline := time.Now().Add(refreshWait)
	for {
		cred, acc, err := r.current(ctx, accountID)
		if err != nil {
			return Credential{}, err
		}
		if cred.AccessToken != "" && cred.AccessToken != rejected {
			return cred, nil // refreshed by someone else meanwhile
		}
		ok, err := r.rdb.SetNX(ctx, lockKey, owner, refreshLockTTL).Result()
		if err != nil {
			return Credential{}, fmt.Errorf("take refresh lock for account %d: %w", accountID, err)
		}
		if ok {
			defer r.unlock(lockKey, owner)
			// Re-read under the lock: the previous holder may have finished just now.
			if cred, _, err = r.current(ctx, accountID); err != nil {
				return Credential{}, err
			}
			if cred.AccessToken != rejected {
				return cred, nil
			}
			return r.redeem(ctx, acc, cred)
		}
		if time.Now().After(deadline) {
			return Credential{}, fmt.Errorf("account %d: timed out waiting for another refresh", accountID)
		}
		select {
		case <-ctx.Done():
			return Credential{}, ctx.Err()
		case <-time.After(150 * time.Millisecond):
		}
	}
}

// RefreshDue refreshes, ahead of expiry, the access tokens of the OAuth accounts that
// expire before due, and returns how many of them now hold a fresh token. Each goes
// through Refresh, so a token another process refreshed meanwhile is left as it is and
// each refresh token is redeemed once cluster-wide. One account's failure does not stop
// the others; the failures are returned together. A refused refresh token does not take
// the account out of rotation here: its access token still works until it expires, and
// a 401 after that puts it in error through the proxy.
func (r *Refresher) RefreshDue(ctx context.Context, due time.Time) (int, error) {
	ids, err := sqlc.New().AccountsOAuthDue(ctx, r.pool, &due)
	if err != nil {
		return 0, fmt.Errorf("list OAuth accounts due for refresh: %w", err)
	}
	var n int
	var errs []error
	for _, id := range ids {
		cred, acc, err := r.current(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if acc.TokenExpiresAt == nil || !acc.TokenExpiresAt.Before(due) {
			continue // refreshed since the list was read
		}
		if _, err := r.Refresh(ctx, id, cred.AccessToken); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func (r *Refresher) current(ctx context.Context, id int64) (Credential, sqlc.Account, error) {
	acc, err := sqlc.New().AccountGetByID(ctx, r.pool, id)
	if err != nil {
		return Credential{}, acc, fmt.Errorf("load account %d: %w", id, err)
	}
	cred, err := Open(r.box, acc.SecretEnc)
	return cred, acc, err
}

// unlock releases the lock only if we still hold it.
func (r *Refresher) unlock(key, owner string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r.rdb.Eval(ctx, `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`, []string{key}, owner) //nolint:errcheck
}

// redeem exchanges the refresh token at the provider and stores the new credential.
func (r *Refresher) redeem(ctx context.Context, acc sqlc.Account, cred Credential) (Credential, error) {
	client, ok := r.clients[acc.Provider]
	if !ok || client.TokenURL == "" || client.ClientID == "" {
		return Credential{}, fmt.Errorf("%w: no OAuth client configured for %s", ErrRefreshFailed, acc.Provider)
	}
	if cred.RefreshToken == "" {
		return Credential{}, fmt.Errorf("%w: account %d has no refresh token", ErrRefreshFailed, acc.ID)
	}
	body, _ := json.Marshal(map[string]string{
		"grant_type": "refresh_token", "refresh_token": cred.RefreshToken, "client_id": client.ClientID,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, client.TokenURL, bytes.NewReader(body))
	if err != nil {
		return Credential{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.http.Do(req)
	if err != nil {
		return Credential{}, fmt.Errorf("refresh account %d: %w", acc.ID, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		// The body names the OAuth error (invalid_grant…); it carries no secret.
		return Credential{}, fmt.Errorf("%w: account %d: token endpoint answered %d: %.200s", ErrRefreshFailed, acc.ID, resp.StatusCode, raw)
	}
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(raw, &tok); err != nil || tok.AccessToken == "" {
		return Credential{}, fmt.Errorf("%w: account %d: token endpoint answered without an access token", ErrRefreshFailed, acc.ID)
	}
	next := Credential{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken}
	if next.RefreshToken == "" {
		next.RefreshToken = cred.RefreshToken // providers that do not rotate
	}
	if tok.ExpiresIn > 0 {
		next.ExpiresAt = time.Now().Add(time.Duration(tok.ExpiresIn) * time.Second)
	}
	sealed, err := Seal(r.box, next)
	if err != nil {
		return Credential{}, err
	}
	var expires *time.Time
	if !next.ExpiresAt.IsZero() {
		expires = &next.ExpiresAt
	}
	// The refresh token is spent: losing the new one would lose the account, so the write
	// is retried against a short outage before giving up.
	for try := 0; ; try++ {
		err = pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
			if err := sqlc.New().AccountSetCredential(ctx, tx, sqlc.AccountSetCredentialParams{ID: acc.ID, SecretEnc: sealed, TokenExpiresAt: expires}); err != nil {
				return err
			}
			return invalidate.Record(ctx, tx, invalidate.Event{Kind: invalidate.Accounts})
		})
		if err == nil || try == 4 {
			break
		}
		time.Sleep(time.Duration(200*(try+1)) * time.Millisecond)
	}
	if err != nil {
		r.log.Error("store refreshed OAuth credential", "account_id", acc.ID, "err", err)
		return Credential{}, fmt.Errorf("store refreshed credential of account %d: %w", acc.ID, err)
	}
	if err := invalidate.Publish(ctx, r.rdb, r.prefix, invalidate.Event{Kind: invalidate.Accounts}); err != nil {
		r.log.Warn("announce refreshed account", "account_id", acc.ID, "err", err)
	}
	r.log.Info("refreshed OAuth access token", "account_id", acc.ID, "expires_at", next.ExpiresAt)
	return next, nil
}
