-- name: PriceInsert :one
INSERT INTO prices (provider, pattern, match, effective_from, input_pico, output_pico,
                    cache_write_5m_pico, cache_write_1h_pico, cache_read_pico,
                    tier_threshold, input_above_pico, output_above_pico,
                    cache_write_5m_above_pico, cache_write_1h_above_pico,
                    cache_read_above_pico, note, created_by)
VALUES (@provider, @pattern, @match, @effective_from, @input_pico, @output_pico,
        @cache_write_5m_pico, @cache_write_1h_pico, @cache_read_pico,
        @tier_threshold, @input_above_pico, @output_above_pico,
        @cache_write_5m_above_pico, @cache_write_1h_above_pico,
        @cache_read_above_pico, @note, @created_by)
ON CONFLICT (provider, pattern, match, effective_from) DO NOTHING
RETURNING *;

-- name: PriceList :many
-- Every row, history included; the catalogue picks the row in force per model and time.
SELECT * FROM prices ORDER BY provider, pattern, match, effective_from;

-- name: PriceCount :one
SELECT count(*) FROM prices;

-- name: PriceListCurrent :many
-- The row in force now of every rule (provider, pattern, match), with the number of rows
-- in its history, for the console's catalogue.
SELECT DISTINCT ON (provider, pattern, match) *,
       count(*) OVER (PARTITION BY provider, pattern, match) AS versions
FROM prices
WHERE effective_from <= now()
ORDER BY provider, pattern, match, effective_from DESC;

-- name: PriceGetByID :one
SELECT * FROM prices WHERE id = @id;

-- name: PriceHistory :many
-- Every row of one rule, newest first (scheduled rows included).
SELECT * FROM prices
WHERE provider = @provider AND pattern = @pattern AND match = @match
ORDER BY effective_from DESC;

-- name: PriceRuleExists :one
SELECT EXISTS (SELECT 1 FROM prices WHERE provider = @provider AND pattern = @pattern AND match = @match);
