-- name: AccountInsert :one
INSERT INTO accounts (name, provider, kind, base_url, secret_enc, egress_proxy_enc,
                      priority, weight, max_concurrency, models, model_map, token_expires_at)
VALUES (@name, @provider, @kind, @base_url, @secret_enc, @egress_proxy_enc,
        @priority, @weight, @max_concurrency, @models, @model_map, @token_expires_at)
RETURNING *;

-- name: AccountGetByName :one
SELECT * FROM accounts WHERE name = @name ORDER BY id LIMIT 1;

-- name: AccountList :many
SELECT * FROM accounts ORDER BY id;

-- name: AccountUpdateBaseURL :exec
UPDATE accounts SET base_url = @base_url, updated_at = now() WHERE id = @id;

-- name: AccountSetState :exec
UPDATE accounts SET state = @state, state_reason = @state_reason, state_until = @state_until,
    updated_at = now()
WHERE id = @id AND state <> 'disabled';

-- name: AccountGetByID :one
SELECT * FROM accounts WHERE id = @id;

-- name: AccountsOAuthDue :many
-- OAuth accounts whose access token expires before @due, soonest first. Accounts in
-- error (their token was refused and refreshing failed) and disabled ones wait for an
-- operator.
SELECT id FROM accounts
WHERE kind = 'oauth' AND state NOT IN ('error', 'disabled') AND token_expires_at < @due
ORDER BY token_expires_at
LIMIT 200;

-- name: AccountSetCredential :exec
-- A refreshed OAuth credential; clears an error state the old token caused.
UPDATE accounts SET secret_enc = @secret_enc, token_expires_at = @token_expires_at,
    state = CASE WHEN state = 'error' THEN 'active' ELSE state END,
    state_reason = CASE WHEN state = 'error' THEN '' ELSE state_reason END,
    updated_at = now()
WHERE id = @id;

-- name: AccountSetRatelimit :exec
-- The provider's latest quota headers for the console (written in batches, not per request).
UPDATE accounts SET ratelimit = @ratelimit WHERE id = @id;
