-- Completions of several requests of one user through one API key, merged into one call
-- (batch.go, merge.go): what complete.lua does for each of them, with the commands they
-- share made once — one ZREM per lease set, one MGET, one DECRBY and one INCRBY per
-- counter for their summed cost. Only completions without a checkpoint (complete.lua's
-- mode '0') are merged, and each of them would have returned 1.
--
-- KEYS[1] usage stream   KEYS[2] balance snapshot
-- KEYS[3] user lease set KEYS[4] key lease set   KEYS[5] release channel
-- KEYS[6..8] spend counters (key today, key this month, user today)
-- KEYS[9], KEYS[10] waiting flags of the user, the key
-- then for completion i (from 0): KEYS[11+2i] its account's lease set,
--   KEYS[12+2i] its account's waiting flag
-- ARGV[1] the billed nano-USD of the completions with an event, summed ('0': none)
-- then for completion i: ARGV[2+5i] usage event JSON ('' when it consumed nothing),
--   ARGV[3+5i] lease member, ARGV[4+5i] wake message, ARGV[5+5i], ARGV[6+5i] '1' when it
--   may hold a lease in the user's, the key's set
--
-- Returns the number of completions.
local n = (#KEYS - 10) / 2
local users, keys, sets, order = {}, {}, {}, {}
local flags, seenFlag = {KEYS[2], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]}, {}
for i = 0, n - 1 do
  local a = 2 + 5 * i
  local member = ARGV[a + 1]
  if ARGV[a + 3] == '1' then users[#users + 1] = member end
  if ARGV[a + 4] == '1' then keys[#keys + 1] = member end
  local set = KEYS[11 + 2 * i]
  local m = sets[set]
  if not m then
    m = {}
    sets[set] = m
    order[#order + 1] = set
  end
  m[#m + 1] = member
  local w = KEYS[12 + 2 * i]
  if not seenFlag[w] then
    seenFlag[w] = true
    flags[#flags + 1] = w
  end
end
if #users > 0 then redis.call('ZREM', KEYS[3], unpack(users)) end
if #keys > 0 then redis.call('ZREM', KEYS[4], unpack(keys)) end
for _, set in ipairs(order) do redis.call('ZREM', set, unpack(sets[set])) end
-- As in complete.lua: which counters are present (only those move), and whether anyone
-- waits for one of these scopes.
local v = redis.call('MGET', unpack(flags))
for i = 0, n - 1 do
  local ev = ARGV[2 + 5 * i]
  if ev ~= '' then
    redis.call('XADD', KEYS[1], '*', 'e', ev)
  end
end
if ARGV[1] ~= '0' then
  if v[1] then
    redis.call('DECRBY', KEYS[2], ARGV[1])
  end
  for c = 2, 4 do
    if v[c] then
      redis.call('INCRBY', KEYS[4 + c], ARGV[1])
    end
  end
end
local waiting = false
for c = 5, #flags do
  if v[c] then
    waiting = true
    break
  end
end
if waiting then
  local sent = {}
  for i = 0, n - 1 do
    local msg = ARGV[4 + 5 * i]
    if not sent[msg] then
      sent[msg] = true
      redis.call('PUBLISH', KEYS[5], msg)
    end
  end
end
return n
