-- Commits one chunk's counts, once per chunk whatever the number of runs: the first commit of a
-- chunk adds its counts; the last chunk's makes a queued or running broadcast done.
-- KEYS[1]: the broadcast's hash, KEYS[2]: its committed chunks. ARGV: 1 chunk, 2 created,
-- 3 skipped, 4 failed. Returns {committed now (1|0), status}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 'missing'} end
local first = redis.call('SADD', KEYS[2], ARGV[1])
if first == 1 then
  redis.call('PEXPIRE', KEYS[2], math.max(redis.call('PTTL', KEYS[1]), 1))
  redis.call('HINCRBY', KEYS[1], 'created', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'skipped', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'failed', ARGV[4])
  local committed = redis.call('HINCRBY', KEYS[1], 'committed', 1)
  local status = redis.call('HGET', KEYS[1], 'status')
  if committed >= tonumber(redis.call('HGET', KEYS[1], 'chunks')) and (status == 'queued' or status == 'running') then
    redis.call('HSET', KEYS[1], 'status', 'done')
  end
end
return {first, redis.call('HGET', KEYS[1], 'status')}
