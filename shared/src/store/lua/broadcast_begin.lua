-- A fan-out run starts a chunk: a queued broadcast becomes running. KEYS[1]: the broadcast's
-- hash. Returns its fields (HGETALL), empty when it does not exist.
if redis.call('HGET', KEYS[1], 'status') == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running')
end
return redis.call('HGETALL', KEYS[1])
