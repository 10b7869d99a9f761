-- Release: give back a reserved admission no request took (reserve.go) — its leases,
-- and the request it counted in the key's RPM window while that window lasts — and wake
-- requests waiting for a slot.
--
-- KEYS[1] user lease set   KEYS[2] key lease set   KEYS[3] account lease set
-- KEYS[4] the RPM window counter the reservation counted in (or an unused key)
-- KEYS[5] release channel
-- KEYS[6..8] waiting flags of the user, the key and the account
-- ARGV[1] lease member     ARGV[2], ARGV[3] '1' when it sits in the user's, the key's set
-- ARGV[4] '1' when it counted in KEYS[4]      ARGV[5] wake message
if ARGV[2] == '1' then redis.call('ZREM', KEYS[1], ARGV[1]) end
if ARGV[3] == '1' then redis.call('ZREM', KEYS[2], ARGV[1]) end
local held = redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[4] == '1' and held == 1 then
  -- Only while the window lasts: a DECR would make a missing counter -1.
  if tonumber(redis.call('GET', KEYS[4]) or '0') > 0 then
    redis.call('DECR', KEYS[4])
  end
end
if redis.call('EXISTS', KEYS[6], KEYS[7], KEYS[8]) > 0 then
  redis.call('PUBLISH', KEYS[5], ARGV[5])
end
return held
