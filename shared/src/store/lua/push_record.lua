-- Records what `push` did for (notification, channel) pairs of one user, and prunes old records.
-- KEYS[1]: {u:<id>}:sends (hash), KEYS[2]: {u:<id>}:sends:at (zset of the same fields by time),
-- KEYS[3]: the user's erase marker.
-- ARGV: 1 now ms, 2 keep ms, 3 ttl s, 4 the notification's seq, then field, value pairs.
-- A value is `<hop>|<status>|<unacknowledged outcome JSON, or empty>`; a record never replaces one
-- of a later hop (a late, redelivered record cannot undo a retry's result). A notification from
-- before the user's erase (store/erase.rs) records nothing: returns -1.
local marker = redis.call('GET', KEYS[3])
if marker and tonumber(ARGV[4]) <= tonumber(string.match(marker, '^(%d+)') or '0') then return -1 end
local now = tonumber(ARGV[1])
for i = 5, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', KEYS[1], field)
  local old_hop = old and tonumber(string.match(old, '^(%d+)|')) or -1
  local new_hop = tonumber(string.match(value, '^(%d+)|')) or 0
  if new_hop >= old_hop then
    redis.call('HSET', KEYS[1], field, value)
    redis.call('ZADD', KEYS[2], now, field)
  end
end
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[2]))
for _, field in ipairs(old) do
  redis.call('HDEL', KEYS[1], field)
end
if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[2])) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return #old
