-- Claims retry-schedule entries that are due: each one's score moves to now + lease, so a
-- concurrent drain skips it and, if this drain dies, it comes due again after the lease.
-- KEYS[1]: {push}:due. ARGV: 1 now ms, 2 lease ms, 3 limit. Returns the claimed members.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local until_ms = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', until_ms, member)
end
return due
