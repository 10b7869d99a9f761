-- KEYS[1]: the user's balance snapshot (nano-USD).
-- Returns 1 admitted, 0 refused (balance used up), -1 no snapshot (caller loads it).
local bal = redis.call('GET', KEYS[1])
if not bal then
  return -1
end
if tonumber(bal) <= 0 then
  return 0
end
return 1
