-- Sets a missing balance snapshot (Gate.primeBalance): the ledger's balance less the
-- user's debits waiting in the usage stream, the larger of the sum read before the ledger
-- and the sum now.
--
-- KEYS[1] balance snapshot  KEYS[2] the user's pending debits (PendingKey)
-- ARGV[1] the ledger's balance (nano-USD)  ARGV[2] the pending sum read before it
-- ARGV[3] the snapshot's lifetime (ms)
--
-- Returns 1 when it set the snapshot, 0 when one was there (someone else loaded it).
local pending = ARGV[2]
local now = redis.call('GET', KEYS[2])
if now and tonumber(now) > tonumber(pending) then
  pending = now
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[3]) then
  return 0
end
-- Redis's own 64-bit arithmetic, on the decimal strings (not Lua's doubles).
if tonumber(pending) > 0 then
  redis.call('DECRBY', KEYS[1], pending)
end
return 1
