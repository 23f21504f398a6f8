-- What a call to this provider came to. KEYS[1]: the provider's breaker (see breaker_admit.lua).
-- ARGV: 1 `ok` (it answered: sent, gone, refused) or `fail` (unavailable or still throttling),
-- 2 failures that open it, 3 TTL ms of the state (well past the cool-down).
-- Returns 1 when this call opened the breaker (or re-opened it after a failed trial), else 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] == 'ok' then
  redis.call('DEL', KEYS[1])
  return 0
end
local ttl = tonumber(ARGV[3])
if redis.call('HEXISTS', KEYS[1], 'openedAt') == 1 then
  -- Open already. A failed half-open trial re-opens it: the cool-down starts again. A call
  -- admitted before it opened that fails late changes nothing.
  if not redis.call('HGET', KEYS[1], 'trialUntil') then return 0 end
  redis.call('HSET', KEYS[1], 'openedAt', now)
  redis.call('HDEL', KEYS[1], 'trialUntil')
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 1
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('PEXPIRE', KEYS[1], ttl)
if failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'openedAt', now)
  return 1
end
return 0
