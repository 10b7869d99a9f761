-- name: APIKeyInsert :one
INSERT INTO api_keys (user_id, name, display_prefix, hash, group_id, expires_at)
VALUES (@user_id, @name, @display_prefix, @hash, @group_id, @expires_at)
RETURNING *;

-- name: APIKeyGetByHash :one
SELECT * FROM api_keys WHERE hash = @hash;

-- name: APIKeyListByUser :many
SELECT * FROM api_keys WHERE user_id = @user_id ORDER BY created_at DESC, id DESC;

-- name: APIKeyRevoke :one
UPDATE api_keys SET status = 'revoked', revoked_at = now()
WHERE id = @id AND user_id = @user_id AND status <> 'revoked'
RETURNING *;

-- name: APIKeyAuthGetByHash :one
-- Everything the proxy needs to authorise a key, in one round trip (cache miss only).
SELECT k.id, k.user_id, k.name, k.status, k.concurrency, k.rpm, k.daily_cap_nano,
       k.monthly_cap_nano, k.models, k.ip_allowlist, k.expires_at,
       coalesce(k.group_id, u.group_id)::bigint AS group_id,
       u.status AS user_status, u.concurrency AS user_concurrency,
       u.daily_cap_nano AS user_daily_cap_nano, g.default_concurrency
FROM api_keys k
JOIN users u ON u.id = k.user_id
JOIN groups g ON g.id = coalesce(k.group_id, u.group_id)
WHERE k.hash = @hash;

-- name: APIKeyTouchBatch :exec
UPDATE api_keys k SET last_used_at = t.used_at
FROM (SELECT unnest(@ids::bigint[]) AS id, unnest(@used_at::timestamptz[]) AS used_at) AS t
WHERE k.id = t.id AND (k.last_used_at IS NULL OR k.last_used_at < t.used_at);

-- name: APIKeyGetForUser :one
SELECT * FROM api_keys WHERE id = @id AND user_id = @user_id;

-- name: APIKeyCountActive :one
SELECT count(*) FROM api_keys WHERE status = 'active';

-- name: APIKeyHashPrefixList :many
-- The first 8 bytes of every key's hash: the proxy's set of keys that may exist, so a
-- flood of random keys is refused without a query each.
SELECT substring(hash from 1 for 8)::bytea AS prefix FROM api_keys WHERE status <> 'revoked';
