-- name: UsageEventExistingRequestIDs :many
-- The request ids of a batch that are stored already (a replayed batch).
SELECT request_id FROM usage_events WHERE request_id = ANY(@request_ids::text[]);

-- name: UsageEventReferencesFound :one
-- Of the ids a batch of usage events names, those that exist, each row locked FOR KEY
-- SHARE until the transaction ends, as a foreign key would lock it (migration 0004: the
-- references are checked here once per batch instead of once per row).
WITH u AS (SELECT id FROM users WHERE id = ANY(@user_ids::bigint[]) FOR KEY SHARE),
     k AS (SELECT id FROM api_keys WHERE id = ANY(@api_key_ids::bigint[]) FOR KEY SHARE),
     g AS (SELECT id FROM groups WHERE id = ANY(@group_ids::bigint[]) FOR KEY SHARE),
     a AS (SELECT id FROM accounts WHERE id = ANY(@account_ids::bigint[]) FOR KEY SHARE),
     p AS (SELECT id FROM prices WHERE id = ANY(@price_ids::bigint[]) FOR KEY SHARE)
SELECT ARRAY(SELECT id FROM u)::bigint[] AS users,
       ARRAY(SELECT id FROM k)::bigint[] AS api_keys,
       ARRAY(SELECT id FROM g)::bigint[] AS groups,
       ARRAY(SELECT id FROM a)::bigint[] AS accounts,
       ARRAY(SELECT id FROM p)::bigint[] AS prices;

-- name: UsageEventInsertBatch :many
-- Inserts a batch in one round trip, each row linked to the ledger row that debited it
-- (wallet_tx_id 0: none); rows whose request_id exists are skipped, and only the rows
-- actually inserted come back.
INSERT INTO usage_events (
    request_id, created_at, user_id, api_key_id, group_id, account_id, provider, endpoint,
    model_requested, model_upstream, input_tokens, output_tokens, cache_write_5m_tokens,
    cache_write_1h_tokens, cache_read_tokens, reasoning_tokens, official_cost_nano,
    billed_cost_nano, factor_num, factor_den, price_id, fx_rate_micro, status, stream,
    ttfb_ms, duration_ms, client_ip, user_agent, error_class, attempt, wallet_tx_id)
-- Parallel unnest() calls in one SELECT list walk the arrays in lockstep.
SELECT unnest(@request_id::text[]),
       unnest(@created_at::timestamptz[]),
       unnest(@user_id::bigint[]),
       unnest(@api_key_id::bigint[]),
       unnest(@group_id::bigint[]),
       unnest(@account_id::bigint[]),
       unnest(@provider::text[]),
       unnest(@endpoint::text[]),
       unnest(@model_requested::text[]),
       unnest(@model_upstream::text[]),
       unnest(@input_tokens::bigint[]),
       unnest(@output_tokens::bigint[]),
       unnest(@cache_write_5m_tokens::bigint[]),
       unnest(@cache_write_1h_tokens::bigint[]),
       unnest(@cache_read_tokens::bigint[]),
       unnest(@reasoning_tokens::bigint[]),
       unnest(@official_cost_nano::bigint[]),
       unnest(@billed_cost_nano::bigint[]),
       unnest(@factor_num::bigint[]),
       unnest(@factor_den::bigint[]),
       unnest(@price_id::bigint[]),
       unnest(@fx_rate_micro::bigint[]),
       unnest(@status::integer[]),
       unnest(@stream::boolean[]),
       unnest(@ttfb_ms::integer[]),
       unnest(@duration_ms::integer[]),
       unnest(@client_ip::text[]),
       unnest(@user_agent::text[]),
       unnest(@error_class::text[]),
       unnest(@attempt::integer[]),
       nullif(unnest(@wallet_tx_id::bigint[]), 0)
ON CONFLICT (request_id) DO NOTHING
RETURNING id, user_id, billed_cost_nano;

-- name: UsageEventListByUser :many
SELECT e.*, coalesce(k.name, '') AS key_name
FROM usage_events e LEFT JOIN api_keys k ON k.id = e.api_key_id
WHERE e.user_id = @user_id
ORDER BY e.created_at DESC, e.id DESC
LIMIT @max_rows;

-- name: UsageEventGetByRequestID :one
SELECT * FROM usage_events WHERE request_id = @request_id;

-- name: UsageEventCountByUser :one
SELECT count(*) FROM usage_events WHERE user_id = @user_id;

-- name: UsageEventListByUserBefore :many
-- The next page of a user's usage after the row (before_time, before_id), newest first.
SELECT e.*, coalesce(k.name, '') AS key_name
FROM usage_events e LEFT JOIN api_keys k ON k.id = e.api_key_id
WHERE e.user_id = @user_id AND (e.created_at, e.id) < (@before_time::timestamptz, @before_id::bigint)
ORDER BY e.created_at DESC, e.id DESC
LIMIT @max_rows;

-- name: UsageEventSummaryByUserSince :one
-- Request count and billed spend of a user since a time (the dashboard's "today").
SELECT count(*)::bigint AS requests, coalesce(sum(billed_cost_nano), 0)::bigint AS billed_nano
FROM usage_events
WHERE user_id = @user_id AND created_at >= @since::timestamptz;

-- name: UsageEventSpendByKeySince :one
-- What a key was billed since a time (loads its spend counter for caps).
SELECT coalesce(sum(billed_cost_nano), 0)::bigint FROM usage_events
WHERE api_key_id = @api_key_id AND created_at >= @since::timestamptz;

-- name: UsageEventSpendByUserSince :one
SELECT coalesce(sum(billed_cost_nano), 0)::bigint FROM usage_events
WHERE user_id = @user_id AND created_at >= @since::timestamptz;
