-- Sets a missing balance snapshot (Gate.primeBalance): the ledger's balance less the
-- user's debits waiting in the usage stream, the larger of the sum read before the ledger
-- and the sum now — unless the snapshot was dropped (Drop) since the ledger was read.
--
-- KEYS[1] balance snapshot  KEYS[2] the user's pending debits (PendingKey)
-- KEYS[3] the snapshot's generation, bumped by every drop
-- ARGV[1] the ledger's balance (nano-USD)  ARGV[2] the pending sum read before it
-- ARGV[3] the snapshot's lifetime (ms)  ARGV[4] the generation read before it ('' none)
--
-- Returns 1 when it set the snapshot, 0 when one was there (someone else loaded it), 2
-- when a drop came after the ledger was read: the balance read may miss the change the
-- drop is for, so the caller reads it again.
if (redis.call('GET', KEYS[3]) or '') ~= ARGV[4] then
  return 2
end
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
