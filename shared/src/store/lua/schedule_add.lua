-- Stores a scheduled job (scheduling.rs): the job, its state `scheduled`, its due-set entry and
-- its cancel-key membership, unless the idempotency record names an earlier job.
-- KEYS (all in the {sched} slot): 1 due, 2 jobs, 3 state, 4 cancel-key set, 5 idempotency record.
-- ARGV: 1 id, 2 sendAt ms, 3 job JSON, 4 '1' with a cancel key, 5 '1' with an Idempotency-Key,
-- 6 idempotency TTL ms, 7 cancel-key set TTL ms.
-- Returns {'scheduled'} | {'replay', id, state, jobJSON}.
if ARGV[5] == '1' then
  local prev = redis.call('GET', KEYS[5])
  if prev then
    return {'replay', prev, redis.call('HGET', KEYS[3], prev) or 'sent', redis.call('HGET', KEYS[2], prev) or ''}
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], 'scheduled')
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if ARGV[4] == '1' then
  redis.call('SADD', KEYS[4], ARGV[1])
  redis.call('PEXPIRE', KEYS[4], ARGV[7])
end
if ARGV[5] == '1' then redis.call('SET', KEYS[5], ARGV[1], 'PX', ARGV[6]) end
return {'scheduled'}
