-- May a call go to this provider? The breaker's state is one hash: `failures` (consecutive
-- failover-kind failures while closed), `openedAt` (ms, present while open or half-open) and
-- `trialUntil` (ms: the one half-open trial call in flight, leased).
-- KEYS[1]: the provider's breaker. ARGV: 1 cool-down ms, 2 trial lease ms.
-- Returns {1, 0} closed: call; {2, 0} half-open: this caller makes the one trial call;
-- {0, waitMs} open (or another caller's trial in flight): skip the provider.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cooldown, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local opened = tonumber(redis.call('HGET', KEYS[1], 'openedAt') or '')
if not opened then return {1, 0} end
if now < opened + cooldown then return {0, opened + cooldown - now} end
local trial = tonumber(redis.call('HGET', KEYS[1], 'trialUntil') or '0')
if trial > now then return {0, trial - now} end
redis.call('HSET', KEYS[1], 'trialUntil', now + lease)
return {2, 0}
