-- Completion: one call releases the request's leases, records its usage and moves the
-- balance snapshot, then wakes requests waiting for a slot.
--
-- KEYS[1] usage stream   KEYS[2] balance snapshot
-- KEYS[3] user lease set KEYS[4] key lease set KEYS[5] account lease set
-- KEYS[6] release channel
-- KEYS[7..9] spend counters (key today, key this month, user today)
-- KEYS[10..12] waiting flags of the user, the key and the account
-- KEYS[13] journal (sorted set)  KEYS[14] journal events (hash); see checkpoint.lua
-- KEYS[15] the request's sweep mark (an unused key when ARGV[5] is '0')
-- KEYS[16] the user's debits waiting in the stream (names.go, PendingKey)
-- KEYS[17] the key's debits waiting in the stream (KeyPendingKey)
-- ARGV[1] usage event JSON ('' when the attempt consumed nothing)
-- ARGV[2] billed nano-USD  ARGV[3] lease member  ARGV[4] wake message
-- ARGV[5] journal mode, so that a request is billed once even when the proxy that served
--         it and a proxy sweeping orphans both complete it:
--   '0' no checkpoint was kept;
--   '1' the serving proxy completes a request it checkpointed: it bills unless a sweep
--       has marked the request (the journal entry alone is no proof: Redis may have
--       lost it in a restart, and then the serving proxy must still bill);
--   '2' a sweep completes an orphan: it bills only if it takes the journal entry, and
--       marks the request for a day; if the entry was renewed since the sweep read it
--       (its proxy is alive after all), nothing at all happens.
-- ARGV[6] now (ms), for mode '2'
-- ARGV[7], ARGV[8] '1' when the request may hold a lease in the user's, the key's set
--         (admission takes them only where the scope has a concurrency limit)
-- ARGV[9] '1' when the key has a spending cap: its debits waiting in the stream are
--         counted too, for a spend counter loaded from the usage events to add
--
-- Returns 1; 2 when the request was billed by the other side (nothing billed now); 3
-- when a sweep found the request alive (nothing changed).
if ARGV[5] == '2' then
  local expiry = redis.call('ZSCORE', KEYS[13], ARGV[3])
  if expiry and tonumber(expiry) > tonumber(ARGV[6]) then
    return 3
  end
end
if ARGV[7] == '1' then redis.call('ZREM', KEYS[3], ARGV[3]) end
if ARGV[8] == '1' then redis.call('ZREM', KEYS[4], ARGV[3]) end
redis.call('ZREM', KEYS[5], ARGV[3])
local result = 1
if ARGV[5] == '1' then
  redis.call('ZREM', KEYS[13], ARGV[3])
  if redis.call('HDEL', KEYS[14], ARGV[3]) == 0 and redis.call('EXISTS', KEYS[15]) == 1 then
    result = 2
  end
elseif ARGV[5] == '2' then
  redis.call('ZREM', KEYS[13], ARGV[3])
  if redis.call('HDEL', KEYS[14], ARGV[3]) == 0 then
    result = 2
  else
    redis.call('SET', KEYS[15], '1', 'EX', 86400)
  end
end
-- One MGET reads what the rest needs: which of the balance snapshot and the spend
-- counters are present (only those move), and whether anyone waits for one of these
-- scopes (a redis.call costs about as much as the command, so one read, not two).
local v = redis.call('MGET', KEYS[2], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12])
if ARGV[1] ~= '' and result == 1 then
  if tonumber(ARGV[2]) <= 0 then
    redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])
  else
    -- The debit waits in the stream until a worker stores it in the ledger; until then a
    -- snapshot loaded from the ledger must subtract it (and a capped key's spend counter
    -- loaded from the usage events add it). The entry names the amount and the sums, for
    -- the worker to take the one off the others when it deletes the entry.
    if ARGV[9] == '1' then
      redis.call('XADD', KEYS[1], '*', 'e', ARGV[1], 'p', ARGV[2], 'pk', KEYS[16], 'pkk', KEYS[17])
      redis.call('INCRBY', KEYS[17], ARGV[2])
    else
      redis.call('XADD', KEYS[1], '*', 'e', ARGV[1], 'p', ARGV[2], 'pk', KEYS[16])
    end
    redis.call('INCRBY', KEYS[16], ARGV[2])
    -- A missing snapshot stays missing: the next admission loads the ledger balance.
    -- Spend counters, like the snapshot, only move when present: a missing one is
    -- loaded from the ledger's usage events at the next admission that needs it.
    -- Amounts go to Redis as the caller's decimal string (a Lua number would be
    -- formatted by the call, at a cost).
    if v[1] then
      redis.call('DECRBY', KEYS[2], ARGV[2])
    end
    for c = 2, 4 do
      if v[c] then
        redis.call('INCRBY', KEYS[5 + c], ARGV[2])
      end
    end
  end
end
-- Wake waiters only if someone waits for one of these scopes.
if v[5] or v[6] or v[7] then
  redis.call('PUBLISH', KEYS[6], ARGV[4])
end
return result
