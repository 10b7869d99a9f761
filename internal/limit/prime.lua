-- Sets a missing counter (Gate.prime) — a balance snapshot or a spend counter — to what
-- was read from PostgreSQL, unless one of its user's counters was dropped (Drop) since
-- that read: the value read may then miss the change the drop is for. The debits waiting
-- in the usage stream are not in PostgreSQL yet: a balance snapshot is the ledger's
-- balance less its user's pending sum, a spend counter the usage events' sum plus its
-- pending sum (the key's; the user's for the user's daily counter) — each time the larger
-- of the sum read before PostgreSQL and the sum now.
--
-- KEYS[1] the counter  KEYS[2] its user's generation, bumped by every drop (names.go)
-- KEYS[3] the pending sum (PendingKey, KeyPendingKey), if any
-- KEYS[4] spend counters: the usage stream
-- ARGV[1] the value read (nano-USD)  ARGV[2] the counter's lifetime (ms)
-- ARGV[3] the generation read before the value ('' none; '*' set regardless)
-- ARGV[4] the pending sum read before the value
-- ARGV[5] spend counters: the start of the counter's day or month (ms since the epoch).
--         A sum counts debits of any day: it is added only if the stream's oldest entry
--         is from the counter's period, so that a backlog from an earlier day never
--         counts against this one (the counter then goes without, as it did before the
--         sums).
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
    if not KEYS[4] then
      redis.call('DECRBY', KEYS[1], pending)
    else
      local oldest = redis.call('XRANGE', KEYS[4], '-', '+', 'COUNT', 1)[1]
      if oldest and tonumber(string.match(oldest[1], '^%d+')) >= tonumber(ARGV[5]) then
        redis.call('INCRBY', KEYS[1], pending)
      end
    end
  end
end
return 1
