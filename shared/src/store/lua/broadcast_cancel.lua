-- Cancels a scheduled, queued or running broadcast (a done one stays done). KEYS[1]: the broadcast's hash.
-- Returns its fields after (HGETALL), empty when it does not exist.
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'scheduled' or status == 'queued' or status == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled')
end
return redis.call('HGETALL', KEYS[1])
