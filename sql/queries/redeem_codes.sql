-- name: RedeemCodeInsertBatch :many
-- Inserts a batch of codes (their hashes) in one round trip.
INSERT INTO redeem_codes (batch, code_hash, display_prefix, value_nano, max_uses, expires_at, created_by)
SELECT @batch, unnest(@code_hash::bytea[]), unnest(@display_prefix::text[]), @value_nano,
       @max_uses, @expires_at, @created_by
RETURNING id;

-- name: RedeemCodeGetByHashForUpdate :one
-- Locks the code for the redeeming transaction, which serialises concurrent redemptions
-- of one code so its use count can never pass max_uses.
SELECT * FROM redeem_codes WHERE code_hash = @code_hash FOR UPDATE;

-- name: RedeemCodeUse :exec
UPDATE redeem_codes SET used_count = used_count + 1 WHERE id = @id;

-- name: RedeemUseExists :one
SELECT EXISTS (SELECT 1 FROM redeem_uses WHERE code_id = @code_id AND user_id = @user_id);

-- name: RedeemUseInsert :one
INSERT INTO redeem_uses (code_id, user_id, wallet_tx_id)
VALUES (@code_id, @user_id, @wallet_tx_id)
RETURNING *;

-- name: RedeemBatchExists :one
SELECT EXISTS (SELECT 1 FROM redeem_codes WHERE batch = @batch);

-- name: RedeemBatchList :many
-- One row per batch, newest first, with how much of it was used. A batch is generated
-- at once, so its first code's value, uses and expiry are the batch's.
SELECT b.batch, b.codes, c.value_nano, c.max_uses AS uses_per_code, c.expires_at,
       b.used, b.max_uses, b.disabled, b.created_at
FROM (SELECT batch,
             min(id)::bigint AS first_id,
             count(*)::bigint AS codes,
             sum(used_count)::bigint AS used,
             sum(max_uses)::bigint AS max_uses,
             count(disabled_at)::bigint AS disabled,
             min(created_at)::timestamptz AS created_at
      FROM redeem_codes
      GROUP BY batch) b
JOIN redeem_codes c ON c.id = b.first_id
ORDER BY b.created_at DESC, b.batch
LIMIT @max_rows;

-- name: RedeemBatchDisable :execrows
-- Disables every still-enabled code of a batch; codes already redeemed keep their credit.
UPDATE redeem_codes SET disabled_at = now() WHERE batch = @batch AND disabled_at IS NULL;
