-- The user's unpublished changes, lowest seq first, for the outbox relay. Read-only except that
-- it forgets unpublished marks whose record has expired with the inbox.
-- ARGV: 1 max count. Returns {nowMs, record1, record2, ...}.
local out = {now_ms()}
for _, s in ipairs(redis.call('ZRANGE', K.unpub, 0, tonumber(ARGV[1]) - 1)) do
  local rec = redis.call('ZRANGEBYSCORE', K.log, s, s)[1]
  if rec then table.insert(out, rec) else redis.call('ZREM', K.unpub, s) end
end
return out
