-- Marks a user in the outbox's dirty-user index, scored by Redis's clock (one clock for every
-- writer). Runs before each user transaction. KEYS[1]: index. ARGV[1]: userId.
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
return 1
