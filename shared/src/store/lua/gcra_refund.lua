-- Gives back what a GCRA limit charged a request that then wrote less than it was charged for
-- (gcra_lib.lua's state: the theoretical arrival time). KEYS[1]: the limit's key. ARGV: 1 emission
-- interval ms, 2 the cost to give back. Exact: a charge moved the arrival time forward by
-- interval * cost from max(its old value, then); moving it back by the same amount gives the state
-- the limit would have without the charge (at or before now: no state, deleted).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
local back = tat - tonumber(ARGV[1]) * tonumber(ARGV[2])
if back <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.3f', back), 'PX', math.ceil(back - now) + 1)
end
return 1
