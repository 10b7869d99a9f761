-- Acknowledges and deletes a stored batch of usage stream entries, and takes their debits
-- off the users' and the keys' pending sums (limit.PendingKey, KeyPendingKey), which count
-- the debits waiting in the stream for a balance snapshot loaded from the ledger to
-- subtract (and a spend counter loaded from the usage events to add).
--
-- KEYS[1] the usage stream  KEYS[2..] the pending sums of the batch's users and keys
-- ARGV[1] the consumer group  ARGV[2] n, the number of entry ids  ARGV[3..2+n] the ids
-- ARGV[3+n] how many of them were still in the stream when read
-- ARGV[4+n..] the amount to take off each pending sum, in KEYS' order
--
-- A sum moves only if this call deleted every entry it expected to: then no other
-- consumer deleted (and took off) any of them first. Otherwise — two consumers settled
-- the same entries, which the claim of idle entries allows — which entries each deleted
-- is unknown, and the sums of the batch's users are deleted: a snapshot loaded then may
-- miss their other pending debits, as before the sums existed; the next reload after the
-- stream drains is exact again.
local n = tonumber(ARGV[2])
local deleted = 0
-- In chunks: unpack puts every element on Lua's C stack (about 8,000 slots).
for from = 1, n, 1000 do
  local ids = {}
  for i = from, math.min(n, from + 999) do
    ids[#ids + 1] = ARGV[2 + i]
  end
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
  deleted = deleted + redis.call('XDEL', KEYS[1], unpack(ids))
end
local exact = deleted == tonumber(ARGV[3 + n])
-- With the stream empty nothing is pending for anyone: the batch's sums go whatever
-- they hold, which mends one that drifted high (its entries deleted by a worker that did
-- not take them off: one of a version before the sums, during a rolling deploy).
local empty = redis.call('XLEN', KEYS[1]) == 0
for k = 2, #KEYS do
  -- A sum at or below zero has nothing pending left (or drifted low): it goes.
  if not exact or empty or redis.call('DECRBY', KEYS[k], ARGV[2 + n + k]) <= 0 then
    redis.call('DEL', KEYS[k])
  end
end
return deleted
