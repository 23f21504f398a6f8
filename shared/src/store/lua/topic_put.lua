-- Creates or renames a topic. KEYS[1]: the topic's hash. ARGV: 1 '1' when a name is given,
-- 2 the name, 3 now (ms). Returns 1 when created, 0 when it existed.
local created = redis.call('EXISTS', KEYS[1]) == 0
if created then
  redis.call('HSET', KEYS[1], 'subscribers', 0, 'createdAt', ARGV[3])
end
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'name', ARGV[2])
end
if created then return 1 end
return 0
