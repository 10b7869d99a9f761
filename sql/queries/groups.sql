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

-- name: GroupGetByID :one
SELECT * FROM groups WHERE id = @id;

-- name: GroupUpdate :one
UPDATE groups SET description = @description, default_concurrency = @default_concurrency,
    updated_at = now()
WHERE id = @id
RETURNING *;

-- name: GroupPriceFactorListByGroup :many
SELECT * FROM group_price_factors WHERE group_id = @group_id ORDER BY provider;

-- name: GroupPoolChoices :many
-- Every pool, and whether the group may use it (the console's pool checkboxes).
SELECT p.id, p.name, (gp.group_id IS NOT NULL)::boolean AS attached
FROM pools p
LEFT JOIN group_pools gp ON gp.pool_id = p.id AND gp.group_id = @group_id
ORDER BY p.name;

-- name: GroupPoolDetachOthers :exec
-- Detaches the group from every pool not in the list (the rest are attached one by one).
DELETE FROM group_pools WHERE group_id = @group_id AND NOT (pool_id = ANY(@pool_ids::bigint[]));

-- name: GroupPoolNames :many
SELECT gp.group_id, p.name FROM group_pools gp JOIN pools p ON p.id = gp.pool_id
ORDER BY gp.group_id, p.name;
