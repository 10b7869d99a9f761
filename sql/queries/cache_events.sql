-- name: CacheEventsRecord :exec
-- Records changes for the proxies to read (invalidate.Record), in the caller's
-- transaction.
INSERT INTO cache_events (kind, ref)
SELECT unnest(@kinds::text[]), unnest(@refs::text[]);

-- name: CacheEventsSince :many
-- The rows of transactions from since on, and the oldest transaction still running now
-- (every later read starts there). One statement, so both come from one snapshot; a
-- transaction id (xid8) travels as its decimal text.
WITH snap AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin)
SELECT snap.xmin::text AS xmin, e.id, e.kind, e.ref
FROM snap LEFT JOIN cache_events e ON e.tx >= CAST(sqlc.arg(since)::text AS xid8)
ORDER BY e.id;

-- name: CacheEventsPrune :execrows
-- Rows older than any reader can still need.
DELETE FROM cache_events WHERE created_at < @before;
