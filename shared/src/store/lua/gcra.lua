-- Generic cell rate algorithm: `burst` requests at once, then one per emission interval.
-- KEYS[1]: the limit's theoretical-arrival-time key. ARGV: 1 emission interval ms, 2 burst, 3 cost.
-- Returns {1, 0} when allowed, {0, retryAfterMs} when not (nothing is consumed then).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - interval * burst
if allow_at > now then return {0, math.ceil(allow_at - now)} end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1)
return {1, 0}
