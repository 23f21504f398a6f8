-- Generic cell rate algorithm, shared by gcra.lua (a limit on its own) and create.lua (the
-- per-recipient limit, checked in the create's own script): `burst` requests at once, then one
-- per emission interval. `key`: the limit's theoretical-arrival-time key.
-- Returns 1, 0 when allowed (the cost is consumed), 0, retryAfterMs when not (nothing is).
local function gcra(key, interval, burst, cost)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval * cost
  local allow_at = new_tat - interval * burst
  if allow_at > now then return 0, math.ceil(allow_at - now) end
  redis.call('SET', key, string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1)
  return 1, 0
end
