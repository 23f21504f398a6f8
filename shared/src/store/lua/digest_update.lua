-- Adds one event to a digest's open item in place: a new document, the item's token moved on,
-- and one NOTIFICATION_UPDATED change with its own seq; no flag changes, so the counts stay
-- (the unread count went up once, when the item was created).
-- KEYS[8]: the idempotency record, KEYS[9]: the recipient's rate-limit key, KEYS[10]: the user's
-- open digest items (`<digest key>` → `<itemId>|<closesMs>|<count>`).
-- ARGV: 1 item id, 2 its new notification JSON (seq 0, flags false), 3 envelope JSON, 4 body hash
-- ('' = no Idempotency-Key), 5 idempotency TTL ms, 6 log cap, 7 retention ms, 8 Idempotency-Key,
-- 9 the recipient limit's emission interval ms ('' = no limit), 10 its burst, 11 the digest key,
-- 12 the token the caller saw, 13 the item's new token.
-- Returns {'updated', seq, counts} | {'replay', "<seq>\n<notification JSON>"} | {'conflict'} |
-- {'limited', retryAfterMs} | {'stale'}: the item is no longer the one the caller saw (another
-- event, or it was read, archived, deleted or evicted): nothing written, the caller looks again.
local id = ARGV[1]
if ARGV[4] ~= '' then
  local prev = redis.call('GET', KEYS[8])
  if prev then
    local hash, original = string.match(prev, '^([^\n]*)\n(.*)$')
    if hash == ARGV[4] then return {'replay', original} end
    return {'conflict'}
  end
end
purge_expired(now_ms() - tonumber(ARGV[7]), ARGV[3], tonumber(ARGV[6]))
if (redis.call('HGET', KEYS[10], ARGV[11]) or '') ~= ARGV[12] then return {'stale'} end
local v = redis.call('HGET', K.flags, id)
if not v then return {'stale'} end
local bits = parse_state(v)
if bit.band(bits, READ + READ_EVER + ARCHIVED) ~= 0 then return {'stale'} end
if ARGV[9] ~= '' then
  local allowed, retry_ms = gcra(KEYS[9], tonumber(ARGV[9]), tonumber(ARGV[10]), 1)
  if allowed == 0 then return {'limited', retry_ms} end
end
local item_seq = string.match(redis.call('HGET', K.docs, id) or '', '^(%d+)\n') or '0'
redis.call('HSET', K.docs, id, item_seq .. '\n' .. ARGV[2])
redis.call('HSET', KEYS[10], ARGV[11], ARGV[13])
redis.call('PEXPIRE', KEYS[10], ARGV[7])
local seq = next_seq()
local counts = counts_json()
append_change(seq, counts, '{}', ARGV[8], ARGV[3], tonumber(ARGV[6]))
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[8], ARGV[4] .. '\n' .. item_seq .. '\n' .. ARGV[2], 'PX', ARGV[5])
end
touch(tonumber(ARGV[7]))
return {'updated', seq, counts}
