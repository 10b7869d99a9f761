-- KEYS[1]: the usage stream; KEYS[2]: the user's balance snapshot.
-- ARGV[1]: the usage event (JSON); ARGV[2]: billed nano-USD.
-- The event is appended and the snapshot debited in one atomic step. A missing snapshot
-- is left missing (the next admission loads the ledger balance, which by then or soon
-- after includes this event).
redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])
local billed = tonumber(ARGV[2])
if billed > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DECRBY', KEYS[2], billed)
end
return 1
