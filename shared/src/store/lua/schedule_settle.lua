-- Settles scheduled jobs: `sent` (after firing) or `cancelled` (only while still `scheduled`).
-- A settled job leaves the due-set and its cancel-key set, keeps a small record
-- ({sender, sendAt}) for GET until ARGV[3] + keep, and the oldest settled jobs past their keep
-- are removed (at most 64 per call).
-- KEYS: 1 due, 2 jobs, 3 state, 4 done, 5 cancel-key set.
-- ARGV: 1 'sent' | 'cancelled', 2 now ms, 3 keep ms, then pairs of (id, small record JSON).
-- Returns, per id, its state after the call.
local now, keep = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV, 2 do
  local id, small = ARGV[i], ARGV[i + 1]
  local state = redis.call('HGET', KEYS[3], id)
  if state == 'scheduled' or (ARGV[1] == 'sent' and state == 'firing') then
    redis.call('ZREM', KEYS[1], id)
    redis.call('SREM', KEYS[5], id)
    redis.call('HSET', KEYS[3], id, ARGV[1])
    redis.call('HSET', KEYS[2], id, small)
    redis.call('ZADD', KEYS[4], now, id)
    state = ARGV[1]
  end
  out[#out + 1] = state or 'missing'
end
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - keep, 'LIMIT', 0, 64)) do
  redis.call('HDEL', KEYS[2], old)
  redis.call('HDEL', KEYS[3], old)
  redis.call('ZREM', KEYS[4], old)
end
return out
