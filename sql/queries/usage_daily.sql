-- name: UsageDailyRebuild :execrows
-- Recomputes the daily rows of the UTC days in [from_day, to_day) from usage_hourly (the
-- bounds are UTC midnights). Idempotent and re-runnable for any window: rows are
-- replaced, never incremented, so a day always equals the sum of its hours.
INSERT INTO usage_daily (day, user_id, api_key_id, account_id, model, requests,
                         input_tokens, output_tokens, cache_write_tokens, cache_read_tokens,
                         official_cost_nano, billed_cost_nano)
SELECT (hour AT TIME ZONE 'UTC')::date, user_id, api_key_id, account_id, model,
       sum(requests), sum(input_tokens), sum(output_tokens), sum(cache_write_tokens),
       sum(cache_read_tokens), sum(official_cost_nano), sum(billed_cost_nano)
FROM usage_hourly
WHERE hour >= @from_day::timestamptz AND hour < @to_day::timestamptz
GROUP BY 1, 2, 3, 4, 5
ON CONFLICT (day, user_id, api_key_id, account_id, model) DO UPDATE SET
    requests = EXCLUDED.requests, input_tokens = EXCLUDED.input_tokens,
    output_tokens = EXCLUDED.output_tokens, cache_write_tokens = EXCLUDED.cache_write_tokens,
    cache_read_tokens = EXCLUDED.cache_read_tokens,
    official_cost_nano = EXCLUDED.official_cost_nano, billed_cost_nano = EXCLUDED.billed_cost_nano;

-- name: UsageDailyListByUser :many
-- A user's requests and spend per UTC day since a day (given as its UTC midnight).
SELECT (day::timestamp AT TIME ZONE 'UTC')::timestamptz AS day,
       sum(requests)::bigint AS requests, sum(billed_cost_nano)::bigint AS billed_cost_nano
FROM usage_daily
WHERE user_id = @user_id AND day >= (@since::timestamptz AT TIME ZONE 'UTC')::date
GROUP BY day ORDER BY day;
