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
