-- Deletes a topic with every membership bucket. KEYS[1]: the topic's hash, KEYS[2..]: its
-- buckets. Returns 1 when it existed.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('UNLINK', unpack(KEYS))
return 1
