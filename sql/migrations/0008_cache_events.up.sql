-- cache_events is the durable half of cache invalidation: every change that proxies cache
-- (a key revoked or created, a user's keys or group changed, prices, accounts) records a
-- row in the transaction that makes the change, and every proxy reads the new rows each
-- second, beside the Redis pub/sub message that brings the change at once. A message is
-- fire-and-forget: without the rows, a change whose message was lost (Redis down while
-- proxies serve with REDIS_OUTAGE=serve, or the web app alone cut off from Redis) stayed
-- invisible until the proxy's cache expired — five minutes for a revoked key.
--
-- Readers go by transaction id, not by id: ids are taken at insert but become visible at
-- commit, out of order. A reader keeps the oldest transaction still running when it read
-- (pg_snapshot_xmin) and next time reads every row of a transaction from there on, so a
-- row committed late is still read; it skips the rows it has already seen by id.
CREATE TABLE cache_events (
    id         bigserial PRIMARY KEY,
    tx         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    kind       text NOT NULL,
    ref        text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cache_events_tx ON cache_events (tx);
CREATE INDEX cache_events_created ON cache_events (created_at);
