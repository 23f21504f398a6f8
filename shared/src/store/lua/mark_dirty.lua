-- Marks users in the outbox's dirty-user index, scored by Redis's clock (one clock for every
-- writer). Runs before each user transaction. KEYS[1]: index. ARGV: the userIds (one or more).
local t = redis.call('TIME')
local score = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local args = {}
for i, user in ipairs(ARGV) do
  args[2 * i - 1] = score
  args[2 * i] = user
end
redis.call('ZADD', KEYS[1], unpack(args))
return #ARGV
