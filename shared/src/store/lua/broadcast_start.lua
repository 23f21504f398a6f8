-- Starts a scheduled broadcast (the scheduler fires it at its sendAt): `scheduled` becomes
-- `queued` with ARGV[1] (the topic's subscriber count now) as `targeted`. Any other status is
-- left as it is, so a second start changes nothing. KEYS[1]: the broadcast's hash.
-- Returns the status after (nil when the broadcast does not exist).
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'scheduled' then
  redis.call('HSET', KEYS[1], 'status', 'queued', 'targeted', ARGV[1])
  status = 'queued'
end
return status
