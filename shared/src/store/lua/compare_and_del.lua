-- Deletes KEYS[1] if it still holds ARGV[1]. Returns 1 if deleted.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
