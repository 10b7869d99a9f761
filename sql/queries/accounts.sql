-- name: AccountInsert :one
INSERT INTO accounts (name, provider, kind, base_url, secret_enc, egress_proxy_enc,
                      priority, weight, max_concurrency, models, model_map)
VALUES (@name, @provider, @kind, @base_url, @secret_enc, @egress_proxy_enc,
        @priority, @weight, @max_concurrency, @models, @model_map)
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
