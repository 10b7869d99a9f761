-- Sets a missing counter (Gate.prime) — a balance snapshot or a spend counter — to what
-- was read from PostgreSQL, unless one of its user's counters was dropped (Drop) since
-- that read: the value read may then miss the change the drop is for. A balance snapshot
-- is the ledger's balance less the user's debits waiting in the usage stream, the larger
-- of the sum read before the ledger and the sum now.
--
-- KEYS[1] the counter  KEYS[2] its user's generation, bumped by every drop (names.go)
-- KEYS[3] balance snapshots only: the user's pending debits (PendingKey)
-- ARGV[1] the value read (nano-USD)  ARGV[2] the counter's lifetime (ms)
-- ARGV[3] the generation read before the value ('' none; '*' set regardless)
-- ARGV[4] balance snapshots only: the pending sum read before the value
--
-- Returns 1 when it set the counter, 0 when one was there (someone else loaded it), 2
-- when a drop came after the read (the caller reads again).
if ARGV[3] ~= '*' and (redis.call('GET', KEYS[2]) or '') ~= ARGV[3] then
  return 2
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 0
end
if KEYS[3] then
  local pending = ARGV[4]
  local now = redis.call('GET', KEYS[3])
  if now and tonumber(now) > tonumber(pending) then
    pending = now
  end
  -- Redis's own 64-bit arithmetic, on the decimal strings (not Lua's doubles).
  if tonumber(pending) > 0 then
    redis.call('DECRBY', KEYS[1], pending)
  end
end
return 1
