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

-- name: UsersLockForBalance :many
-- Locks the users' rows for a balance update in id order (the rows are locked as they
-- leave the sort), so that transactions updating several users' balances at once never
-- deadlock on each other.
SELECT id FROM users WHERE id = ANY(@ids::bigint[]) ORDER BY id FOR NO KEY UPDATE;

-- name: UserBalanceAddMany :many
-- Adds amounts[i] to the balance of ids[i] (distinct ids, rows locked by
-- UsersLockForBalance), in the transaction that appends the matching wallet_tx rows.
UPDATE users u SET balance_nano = u.balance_nano + d.amount
FROM (SELECT unnest(@ids::bigint[]) AS id, unnest(@amounts::bigint[]) AS amount) AS d
WHERE u.id = d.id
RETURNING u.id, u.balance_nano;

-- name: UserBalanceGet :one
SELECT balance_nano FROM users WHERE id = @id;

-- name: UserBalanceMismatches :many
-- Users whose cached balance differs from their whole ledger's sum: a full recount (the
-- tests' check; the periodic ledger check reads checkpoints instead, LedgerCheckRead).
SELECT u.id, u.email, u.balance_nano, coalesce(l.sum, 0)::bigint AS ledger_nano
FROM users u
LEFT JOIN (SELECT user_id, sum(amount_nano) AS sum FROM wallet_tx GROUP BY user_id) l
    ON l.user_id = u.id
WHERE u.balance_nano <> coalesce(l.sum, 0);

-- name: LedgerCheckRead :many
-- Every user's cached balance beside their ledger sum (the ledger check), the sum read as
-- their checkpoint (migration 0006) plus the rows created since it; settled_nano is the
-- sum through @cut, the next checkpoint, which moves only for users who have none yet or
-- new rows before @cut (move), and only to a @cut past every checkpoint. So no user has
-- a row between their checkpoint and the latest one: the rows since the latest
-- checkpoint (wallet_tx_created) are all a run reads, besides the whole ledger of users
-- who have none yet. (A @cut behind the latest checkpoint — a worker whose clock is
-- behind, a longer settle time — moves nothing: a user without a checkpoint moved there
-- would have their rows between it and the latest one never read again.)
WITH lo AS (
    SELECT coalesce(max(through), 'infinity'::timestamptz) AS t FROM ledger_checkpoints
), recent AS (
    SELECT w.user_id, w.amount_nano, w.created_at FROM wallet_tx w
    WHERE w.created_at >= (SELECT t FROM lo)
    UNION ALL
    -- users without a checkpoint, each read through wallet_tx_user (OFFSET 0 keeps the
    -- planner from scanning every old row by time for them instead)
    SELECT w.user_id, w.amount_nano, w.created_at
    FROM users u
    CROSS JOIN LATERAL (SELECT user_id, amount_nano, created_at FROM wallet_tx WHERE user_id = u.id OFFSET 0) w
    WHERE NOT EXISTS (SELECT 1 FROM ledger_checkpoints c WHERE c.user_id = u.id)
      AND w.created_at < (SELECT t FROM lo)
), since AS (
    SELECT r.user_id,
           sum(r.amount_nano) FILTER (WHERE r.created_at < @cut::timestamptz) AS settled,
           sum(r.amount_nano) AS total
    FROM recent r LEFT JOIN ledger_checkpoints c ON c.user_id = r.user_id
    WHERE r.created_at >= coalesce(c.through, '-infinity'::timestamptz)
    GROUP BY r.user_id
)
SELECT u.id, u.email, u.balance_nano,
       (coalesce(c.sum_nano, 0) + coalesce(s.total, 0))::bigint AS ledger_nano,
       (coalesce(c.sum_nano, 0) + coalesce(s.settled, 0))::bigint AS settled_nano,
       (((SELECT t FROM lo) = 'infinity' OR @cut::timestamptz > (SELECT t FROM lo))
           AND (c.user_id IS NULL OR s.settled IS NOT NULL))::boolean AS move
FROM users u
LEFT JOIN ledger_checkpoints c ON c.user_id = u.id
LEFT JOIN since s ON s.user_id = u.id
ORDER BY u.id;

-- name: LedgerCheckpointsPut :exec
-- Moves the given users' checkpoints to @through with their settled sums (LedgerCheckRead
-- says whom).
INSERT INTO ledger_checkpoints (user_id, through, sum_nano)
SELECT unnest(@user_ids::bigint[]), @through::timestamptz, unnest(@sums::bigint[])
ON CONFLICT (user_id) DO UPDATE SET through = EXCLUDED.through, sum_nano = EXCLUDED.sum_nano;

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
