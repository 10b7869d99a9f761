-- name: SettingGet :one
SELECT * FROM settings WHERE key = @key;

-- name: SettingPut :exec
INSERT INTO settings (key, value, updated_by) VALUES (@key, @value, @updated_by)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_by = EXCLUDED.updated_by,
    updated_at = now();
