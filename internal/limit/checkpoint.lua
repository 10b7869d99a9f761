-- Checkpoint: keep the usage event of a stream as far as it has reported usage, so that
-- if this proxy dies before completing the request, another proxy bills it (Orphans).
--
-- KEYS[1] the request's account lease set
-- KEYS[2] journal: sorted set of request ids scored by lease expiry (renewed with it)
-- KEYS[3] journal events: hash of request id → usage event JSON
-- ARGV[1] request id  ARGV[2] lease expiry (ms)  ARGV[3] usage event JSON
--
-- Nothing is written once the lease is gone (completed, or expired): a late checkpoint
-- must not resurrect a request that was already billed.
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
return 1
