-- Removes hash field ARGV[1] of KEYS[1] if it still holds ARGV[2]. Returns 1 if removed.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
