-- name: GroupInsert :one
INSERT INTO groups (name, description, is_default, default_concurrency)
VALUES (@name, @description, @is_default, @default_concurrency)
RETURNING *;

-- name: GroupGetByName :one
SELECT * FROM groups WHERE name = @name;

-- name: GroupGetDefault :one
SELECT * FROM groups WHERE is_default;

-- name: GroupList :many
SELECT * FROM groups ORDER BY id;

-- name: GroupPoolAttach :exec
INSERT INTO group_pools (group_id, pool_id) VALUES (@group_id, @pool_id)
ON CONFLICT DO NOTHING;

-- name: GroupPoolList :many
SELECT * FROM group_pools ORDER BY group_id, pool_id;

-- name: GroupPriceFactorUpsert :exec
INSERT INTO group_price_factors (group_id, provider, multiplier_ppm, peg_rmb_micro)
VALUES (@group_id, @provider, @multiplier_ppm, @peg_rmb_micro)
ON CONFLICT (group_id, provider) DO UPDATE
SET multiplier_ppm = EXCLUDED.multiplier_ppm, peg_rmb_micro = EXCLUDED.peg_rmb_micro;

-- name: GroupPriceFactorList :many
SELECT * FROM group_price_factors ORDER BY group_id, provider;
