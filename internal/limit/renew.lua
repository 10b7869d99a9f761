-- Renews a long request's leases. KEYS: user, key and account lease sets.
-- ARGV[1] new expiry (ms), ARGV[2] lease member. XX: never resurrect a released lease.
for i = 1, 3 do
  redis.call('ZADD', KEYS[i], 'XX', ARGV[1], ARGV[2])
end
return 1
