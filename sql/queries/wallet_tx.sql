-- name: WalletTxInsert :one
-- ON CONFLICT makes every credit and debit idempotent by (kind, ref): the caller learns
-- from an empty result that the entry already existed and must not touch the balance.
INSERT INTO wallet_tx (user_id, amount_nano, kind, ref, note, actor_id)
VALUES (@user_id, @amount_nano, @kind, @ref, @note, @actor_id)
ON CONFLICT (kind, ref) DO NOTHING
RETURNING *;

-- name: WalletTxInsertMany :many
-- WalletTxInsert for several entries in one statement (without actors); like it, an entry
-- whose (kind, ref) exists already returns no row.
INSERT INTO wallet_tx (user_id, amount_nano, kind, ref, note)
SELECT unnest(@user_ids::bigint[]), unnest(@amounts::bigint[]), unnest(@kinds::text[]), unnest(@refs::text[]),
       unnest(@notes::text[])
ON CONFLICT (kind, ref) DO NOTHING
RETURNING *;

-- name: WalletTxListByUser :many
SELECT * FROM wallet_tx WHERE user_id = @user_id ORDER BY id DESC LIMIT @max_rows;

-- name: WalletTxSumByUser :one
SELECT coalesce(sum(amount_nano), 0)::bigint FROM wallet_tx WHERE user_id = @user_id;
