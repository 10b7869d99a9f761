-- name: UsageHourlyRebuild :execrows
-- Recomputes the rollup rows of the hours in [from, to) from usage_events (a repair: the
-- ingestion keeps them, UsageHourlyAdd). Idempotent and re-runnable for any window: rows
-- are replaced, never incremented. Hours are UTC hours, as the ingestion's.
INSERT INTO usage_hourly (hour, user_id, api_key_id, account_id, model, requests,
                          input_tokens, output_tokens, cache_write_tokens, cache_read_tokens,
                          official_cost_nano, billed_cost_nano)
SELECT date_trunc('hour', created_at, 'UTC'), user_id, api_key_id, account_id,
       model_requested, count(*), sum(input_tokens), sum(output_tokens),
       sum(cache_write_5m_tokens + cache_write_1h_tokens), sum(cache_read_tokens),
       sum(official_cost_nano), sum(billed_cost_nano)
FROM usage_events
WHERE created_at >= @from_hour::timestamptz AND created_at < @to_hour::timestamptz
GROUP BY 1, 2, 3, 4, 5
ON CONFLICT (hour, user_id, api_key_id, account_id, model) DO UPDATE SET
    requests = EXCLUDED.requests, input_tokens = EXCLUDED.input_tokens,
    output_tokens = EXCLUDED.output_tokens, cache_write_tokens = EXCLUDED.cache_write_tokens,
    cache_read_tokens = EXCLUDED.cache_read_tokens,
    official_cost_nano = EXCLUDED.official_cost_nano, billed_cost_nano = EXCLUDED.billed_cost_nano;

-- name: UsageHourlyLock :exec
-- Holds off the ingestion's increments (UsageHourlyAdd) until the transaction ends, so
-- that a rebuild's sums, read after this, miss none of them and none is overwritten.
LOCK TABLE usage_hourly IN SHARE ROW EXCLUSIVE MODE;

-- name: UsageHourlyAdd :exec
-- Adds the events a batch has just stored to the hourly rollup, in the ingestion's
-- transaction (internal/usage/ingest.go): one row per UTC hour, user, key, account and
-- model of the batch, given in that order so concurrent ingesters lock them alike.
INSERT INTO usage_hourly (hour, user_id, api_key_id, account_id, model, requests,
                          input_tokens, output_tokens, cache_write_tokens, cache_read_tokens,
                          official_cost_nano, billed_cost_nano)
SELECT unnest(@hour::timestamptz[]), unnest(@user_id::bigint[]), unnest(@api_key_id::bigint[]),
       unnest(@account_id::bigint[]), unnest(@model::text[]), unnest(@requests::bigint[]),
       unnest(@input_tokens::bigint[]), unnest(@output_tokens::bigint[]),
       unnest(@cache_write_tokens::bigint[]), unnest(@cache_read_tokens::bigint[]),
       unnest(@official_cost_nano::bigint[]), unnest(@billed_cost_nano::bigint[])
ON CONFLICT (hour, user_id, api_key_id, account_id, model) DO UPDATE SET
    requests = usage_hourly.requests + EXCLUDED.requests,
    input_tokens = usage_hourly.input_tokens + EXCLUDED.input_tokens,
    output_tokens = usage_hourly.output_tokens + EXCLUDED.output_tokens,
    cache_write_tokens = usage_hourly.cache_write_tokens + EXCLUDED.cache_write_tokens,
    cache_read_tokens = usage_hourly.cache_read_tokens + EXCLUDED.cache_read_tokens,
    official_cost_nano = usage_hourly.official_cost_nano + EXCLUDED.official_cost_nano,
    billed_cost_nano = usage_hourly.billed_cost_nano + EXCLUDED.billed_cost_nano;

-- name: UsageHourlyListByUser :many
SELECT hour, sum(requests)::bigint AS requests, sum(billed_cost_nano)::bigint AS billed_cost_nano,
       sum(input_tokens + cache_write_tokens + cache_read_tokens)::bigint AS input_tokens,
       sum(output_tokens)::bigint AS output_tokens
FROM usage_hourly
WHERE user_id = @user_id AND hour >= @since::timestamptz
GROUP BY hour ORDER BY hour;
