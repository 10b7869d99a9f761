-- name: PoolInsert :one
INSERT INTO pools (name, description) VALUES (@name, @description) RETURNING *;

-- name: PoolGetByName :one
SELECT * FROM pools WHERE name = @name;

-- name: PoolAccountAttach :exec
INSERT INTO pool_accounts (pool_id, account_id) VALUES (@pool_id, @account_id)
ON CONFLICT DO NOTHING;

-- name: PoolAccountList :many
SELECT * FROM pool_accounts ORDER BY pool_id, account_id;
