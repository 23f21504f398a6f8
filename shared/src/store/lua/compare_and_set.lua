-- Sets KEYS[1] to ARGV[2] if it still holds ARGV[1] ('' meaning absent). Returns 1 if set.
local cur = redis.call('GET', KEYS[1])
if (cur or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
