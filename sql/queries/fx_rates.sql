-- name: FxRateLatest :one
-- The newest USD/CNY rate; whether it is stale is for the caller to judge by fetched_at.
SELECT * FROM fx_rates WHERE base = 'USD' AND quote = 'CNY' ORDER BY fetched_at DESC LIMIT 1;

-- name: FxRateInsert :one
INSERT INTO fx_rates (base, quote, rate_micro, source, fetched_at)
VALUES ('USD', 'CNY', @rate_micro, @source, @fetched_at)
RETURNING *;
