-- Admission: one call decides a request (or a failover attempt).
--
-- KEYS[1] balance snapshot      KEYS[2] RPM window counter of the key
-- KEYS[3] user lease set        KEYS[4] key lease set
-- KEYS[5] sticky binding (or an unused key when there is no session)
-- KEYS[6] lease set of the account to release (failover) or an unused key
-- KEYS[7] key's spend today  KEYS[8] key's spend this month  KEYS[9] user's spend today
-- KEYS[10] user's waiting flag  KEYS[11] key's waiting flag
-- KEYS[12..] per candidate account: its lease set, its state key, its waiting flag
--
-- ARGV[1] now (ms)              ARGV[2] lease expiry (ms)   ARGV[3] lease member (request id)
-- ARGV[4] user concurrency      ARGV[5] key concurrency     ARGV[6] key RPM (0: none)
-- ARGV[7] sticky TTL (s; 0: no session)                     ARGV[8] failover attempt (1/0)
-- ARGV[9] random rotation for tie-breaks                    ARGV[10] candidate count
-- ARGV[11..13] caps (nano-USD; 0: none) for KEYS[7..9]
-- ARGV[14] how long a waiting flag lives (ms)
-- ARGV[15] '1': purge the expired leases of every candidate, counted or not (see below)
-- ARGV[16] '1': a reservation for a request expected soon (reserve.go): refused while
--          anyone waits for one of its scopes or when it would take the last free unit
--          of a limit, and it never raises a waiting flag
-- ARGV[17..] per candidate: id, priority, weight, max concurrency
--
-- A request about to wait for a slot raises the waiting flag of the full scope; the
-- completion script publishes a release only when a flag is up, so an idle proxy fleet
-- pays no PUBLISH per request.
--
-- Leases are sorted-set members scored by expiry, and only unexpired ones are counted,
-- so a process that dies without releasing leaks nothing past the TTL. The expired ones
-- are purged from every set the call touches when the caller asks (ARGV[15], about one
-- call in 64): only a dead process leaves any, and a purge per set per call cost as much
-- as the count itself.
--
-- Every redis.call costs about as much as the command itself (1–2 µs here), so the
-- script reads every plain key it needs in one MGET.
--
-- Returns {code, value}:
--   1 admitted, value = account id        0 balance used up       -1 no balance snapshot
--   2 user concurrency full               3 key concurrency full
--   4 RPM reached, value = ms until the window ends
--   5 every usable account is at its concurrency limit
--   6 no candidate account is usable now (cooling, limited, error)
--   7 a spending cap is reached, value = which (1 key daily, 2 key monthly, 3 user daily)
--  -2 a capped spend counter is missing, value = which (the caller loads it)
--   8 not reserved: a request waits for one of the scopes
local now = tonumber(ARGV[1])
local member = ARGV[3]
local failover = ARGV[8] == '1'
local n = tonumber(ARGV[10])
local reserve = ARGV[16] == '1'

-- balance, RPM counter, spend counters, sticky binding, then each candidate's state; a
-- reservation also reads the waiting flags (the user's, the key's, each candidate's)
local reads = {KEYS[1], KEYS[2], KEYS[7], KEYS[8], KEYS[9], KEYS[5]}
for i = 1, n do reads[6 + i] = KEYS[11 + (i - 1) * 3 + 2] end
if reserve then
  reads[7 + n], reads[8 + n] = KEYS[10], KEYS[11]
  for i = 1, n do reads[8 + n + i] = KEYS[11 + (i - 1) * 3 + 3] end
end
local v = redis.call('MGET', unpack(reads))
if reserve then
  for i = 7 + n, #reads do
    if v[i] then return {8, 0} end
  end
end
-- A reservation never takes the last free unit of a limit (a slot, a request of the
-- minute): what it holds while it waits must not refuse or hold up a real request.
local spare = reserve and 1 or 0
local purge = ARGV[15] == '1'
local live = '(' .. ARGV[1]
-- The live leases of a set, exactly when the decision needs it: ZCARD also counts the
-- expired ones, so it can only overstate, and it is taken as is while it says the limit
-- is not near. Only then are the live ones counted: ZCOUNT walks the compact encoding
-- of a small set member by member, 1–3 µs at 50 in flight against 0.2 µs for ZCARD.
local function inflight(set, limit)
  local count = redis.call('ZCARD', set)
  if count + spare >= limit then
    count = redis.call('ZCOUNT', set, live, '+inf')
  end
  return count
end

if failover then
  redis.call('ZREM', KEYS[6], member)
else
  local bal = v[1]
  if not bal then return {-1, 0} end
  -- The snapshot is a canonical integer (SET from an int64, then DECRBY): used up when
  -- '0' or negative. Numbers are parsed only where a comparison needs them, and limits
  -- of '0' (none; the caller never sends a negative one) are told by their string: a
  -- tonumber costs a third of a µs here, as much as a small command.
  if bal == '0' or string.byte(bal) == 45 then return {0, 0} end
  if ARGV[6] ~= '0' then
    if tonumber(v[2] or '0') + spare >= tonumber(ARGV[6]) then
      return {4, 60000 - (now % 60000)}
    end
  end
  for c = 1, 3 do
    local cap = ARGV[10 + c]
    if cap ~= '0' then
      local spent = v[2 + c]
      if not spent then return {-2, c} end
      if tonumber(spent) >= tonumber(cap) then return {7, c} end
    end
  end
  if ARGV[4] ~= '0' then
    if purge then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[1]) end
    local limit = tonumber(ARGV[4])
    if inflight(KEYS[3], limit) + spare >= limit then
      if not reserve then redis.call('SET', KEYS[10], '1', 'PX', ARGV[14]) end
      return {2, 0}
    end
  end
  if ARGV[5] ~= '0' then
    if purge then redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[1]) end
    local limit = tonumber(ARGV[5])
    if inflight(KEYS[4], limit) + spare >= limit then
      if not reserve then redis.call('SET', KEYS[11], '1', 'PX', ARGV[14]) end
      return {3, 0}
    end
  end
end

-- A binding is '<account id>@<tenth of the sticky TTL it was written in>' (or, written
-- by an older version, the bare id).
local sticky, binding = nil, nil
if ARGV[7] ~= '0' and v[6] then
  binding = v[6]
  local at = string.find(binding, '@', 1, true)
  sticky = at and string.sub(binding, 1, at - 1) or binding
end
local best, bestPrio, bestLoad = nil, nil, nil
local stickyIdx = nil
local anyUsable = false
local rot = tonumber(ARGV[9])
for j = 0, n - 1 do
  local i = ((j + rot) % n) + 1
  local base = 16 + (i - 1) * 4
  local id, prio, weight, maxc = ARGV[base + 1], tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  local leases = KEYS[11 + (i - 1) * 3 + 1]
  local blockedUntil = v[6 + i]
  if not blockedUntil or tonumber(blockedUntil) <= now then
    anyUsable = true
    if maxc == 0 and n == 1 then
      -- Alone and unlimited: its load decides nothing.
      if purge then redis.call('ZREMRANGEBYSCORE', leases, '-inf', ARGV[1]) end
      best, bestPrio, bestLoad = i, prio, 0
      if sticky == id then stickyIdx = i end
    else
      if purge then redis.call('ZREMRANGEBYSCORE', leases, '-inf', ARGV[1]) end
      -- An unlimited account's load may count a dead process's expired leases until
      -- the next purge: it only steers the choice.
      local used = maxc == 0 and redis.call('ZCARD', leases) or inflight(leases, maxc)
      if maxc == 0 or used + spare < maxc then
        if sticky == id then stickyIdx = i end
        local load = used / weight
        if best == nil or prio < bestPrio or (prio == bestPrio and load < bestLoad) then
          best, bestPrio, bestLoad = i, prio, load
        end
      end
    end
  elseif purge then
    redis.call('ZREMRANGEBYSCORE', leases, '-inf', ARGV[1])
  end
end
if stickyIdx ~= nil then best = stickyIdx end
if best == nil then
  if anyUsable then
    if not reserve then
      for i = 1, n do
        redis.call('SET', KEYS[11 + (i - 1) * 3 + 3], '1', 'PX', ARGV[14])
      end
    end
    return {5, 0}
  end
  return {6, 0}
end

local accountId = ARGV[16 + (best - 1) * 4 + 1]
redis.call('ZADD', KEYS[11 + (best - 1) * 3 + 1], ARGV[2], member)
if not failover then
  if ARGV[4] ~= '0' then redis.call('ZADD', KEYS[3], ARGV[2], member) end
  if ARGV[5] ~= '0' then redis.call('ZADD', KEYS[4], ARGV[2], member) end
  if ARGV[6] ~= '0' then
    -- The window's counter is made here and nowhere else: it needs its expiry once.
    if redis.call('INCR', KEYS[2]) == 1 then
      redis.call('PEXPIRE', KEYS[2], 61000)
    end
  end
end
if ARGV[7] ~= '0' then
  -- The binding slides: rewritten with a fresh TTL when it changes and at most once per
  -- tenth of the TTL, so a session stays bound for at least nine tenths of the TTL after
  -- its last request, and its requests do not each cost a write.
  local want = accountId .. '@' .. math.floor(now / (tonumber(ARGV[7]) * 100))
  if binding ~= want then
    redis.call('SET', KEYS[5], want, 'EX', ARGV[7])
  end
end
return {1, tonumber(accountId)}
