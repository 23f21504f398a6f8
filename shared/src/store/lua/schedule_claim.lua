-- Claims the scheduled jobs due at ARGV[1]: each one's due score moves to now + lease and its
-- state becomes `firing`, so a concurrent drain skips it and, if this one dies, it comes due
-- again after the lease. Entries of cancelled, sent or missing jobs are dropped.
-- KEYS: 1 due, 2 jobs, 3 state. ARGV: 1 now ms, 2 lease ms, 3 limit.
-- Returns {id, jobJSON, id, jobJSON, ...}.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local until_ms = tonumber(ARGV[1]) + tonumber(ARGV[2])
local out = {}
for _, id in ipairs(due) do
  local state = redis.call('HGET', KEYS[3], id)
  local job = redis.call('HGET', KEYS[2], id)
  if job and (state == 'scheduled' or state == 'firing') then
    redis.call('ZADD', KEYS[1], 'XX', until_ms, id)
    redis.call('HSET', KEYS[3], id, 'firing')
    out[#out + 1] = id
    out[#out + 1] = job
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
