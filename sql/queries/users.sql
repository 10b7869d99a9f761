-- name: UserInsert :one
INSERT INTO users (email, display_name, password_hash, role, group_id, email_verified_at)
VALUES (@email, @display_name, @password_hash, @role, @group_id, @email_verified_at)
RETURNING *;

-- name: UserGetByID :one
SELECT * FROM users WHERE id = @id;

-- name: UserGetByEmail :one
SELECT * FROM users WHERE email = lower(@email::text);

-- name: UserSetLastLogin :exec
UPDATE users SET last_login_at = now() WHERE id = @id;

-- name: UserSetPassword :exec
UPDATE users SET password_hash = @password_hash, updated_at = now() WHERE id = @id;

-- name: UserBalanceAdd :one
-- Only ever called in the transaction that appends the matching wallet_tx row.
UPDATE users SET balance_nano = balance_nano + @amount_nano WHERE id = @id
RETURNING balance_nano;

-- name: UserBalanceGet :one
SELECT balance_nano FROM users WHERE id = @id;

-- name: UserBalanceMismatches :many
-- Users whose cached balance differs from their ledger sum (the ledger check).
SELECT u.id, u.email, u.balance_nano, coalesce(l.sum, 0)::bigint AS ledger_nano
FROM users u
LEFT JOIN (SELECT user_id, sum(amount_nano) AS sum FROM wallet_tx GROUP BY user_id) l
    ON l.user_id = u.id
WHERE u.balance_nano <> coalesce(l.sum, 0);

-- name: UserCount :one
SELECT count(*) FROM users;

-- name: UserIDListAffectedByGroup :many
-- Users whose keys a group change affects: its members and owners of keys narrowed to it.
SELECT u.id FROM users u WHERE u.group_id = @group_id
UNION
SELECT k.user_id FROM api_keys k WHERE k.group_id = @group_id;

-- name: UserCountByGroup :many
SELECT group_id, count(*)::bigint AS users FROM users GROUP BY group_id;

-- name: UserList :many
-- Users for the console, oldest first, optionally those whose email contains a string.
SELECT u.id, u.email, u.role, u.status, u.balance_nano, u.created_at, g.name AS group_name
FROM users u JOIN groups g ON g.id = u.group_id
WHERE @query::text = '' OR strpos(u.email, lower(@query::text)) > 0
ORDER BY u.id
LIMIT @max_rows;
