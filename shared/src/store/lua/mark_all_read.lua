-- Marks every unread notification (of one type, if given) read and seen, and appends one ALL_READ.
-- ARGV: 1 type ('' = all types), 2 envelope JSON, 3 log cap, 4 retention ms. Expired ones are
-- evicted first.
-- Returns {'unchanged', counts} | {'updated', seq, counts, changed}.
purge_expired(now_ms() - tonumber(ARGV[4]), ARGV[2], tonumber(ARGV[3]))
local changed = 0
for _, id in ipairs(redis.call('ZRANGE', K.unread, 0, -1)) do
  local v = redis.call('HGET', K.flags, id)
  if not v then
    redis.call('ZREM', K.unread, id)
  else
    local old, created, typ, expires = parse_state(v)
    if ARGV[1] == '' or ARGV[1] == typ then
      local new = remember(old, bit.bor(old, READ + SEEN))
      redis.call('HSET', K.flags, id, state(new, created, typ, expires))
      redis.call('ZREM', K.unread, id)
      recount(typ, old, new)
      changed = changed + 1
    end
  end
end
if changed == 0 then return {'unchanged', counts_json()} end
local seq = next_seq()
local counts = counts_json()
append_change(seq, counts, '{}', '', ARGV[2], tonumber(ARGV[3]))
touch(tonumber(ARGV[4]))
return {'updated', seq, counts, changed}
