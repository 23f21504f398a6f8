-- Creates one notification: claims the Idempotency-Key, checks the recipient's rate limit
-- (gcra_lib.lua), applies retention and the inbox cap (evictions append deletes), assigns seq,
-- stores the notification, updates the counts, and appends the change. One step.
-- KEYS[8]: the idempotency record, KEYS[9]: the recipient's rate-limit key, KEYS[10]: the
-- erase marker, KEYS[11]: the index of idempotency records, KEYS[12]: the user's open digest
-- items (all in the same slot).
-- ARGV: 1 id, 2 type, 3 notification JSON (seq 0, flags false), 4 envelope JSON, 5 body hash
-- ('' = no Idempotency-Key), 6 idempotency TTL ms, 7 createdAt ms, 8 inbox cap, 9 log cap,
-- 10 retention ms, 11 Idempotency-Key, 12 expiresAt ms ('' = none), 13 the recipient limit's
-- emission interval ms ('' = no limit), 14 its burst, 15 the digest key ('' = not a digest
-- item), 16 the open-item token the caller saw for it ('' = none), 17 this item's token.
-- Returns {'created', seq, counts} | {'replay', "<seq>\n<notification JSON>"} | {'conflict'} |
-- {'limited', retryAfterMs} | {'stale'}. A replay or a conflict consumes no rate; a limited or
-- stale create writes nothing (stale: another event changed the digest's open item since the
-- caller looked; it looks again, store/inbox/digest.rs).
local id, typ, created = ARGV[1], ARGV[2], tonumber(ARGV[7])
if ARGV[5] ~= '' then
  local prev = redis.call('GET', KEYS[8])
  if prev then
    local hash, original = string.match(prev, '^([^\n]*)\n(.*)$')
    if hash == ARGV[5] then return {'replay', original} end
    return {'conflict'}
  end
end
if ARGV[15] ~= '' and (redis.call('HGET', KEYS[12], ARGV[15]) or '') ~= ARGV[16] then
  return {'stale'}
end
if ARGV[13] ~= '' then
  local allowed, retry_ms = gcra(KEYS[9], tonumber(ARGV[13]), tonumber(ARGV[14]), 1)
  if allowed == 0 then return {'limited', retry_ms} end
end
-- A first create after an erase starts a new life whose seqs continue above the erased ones, so
-- every consumer tells a late record of the old life by its seq (store/erase.rs).
local meta = read_meta()
if meta.seq == nil then
  local marker = redis.call('GET', KEYS[10])
  if marker then
    meta.seq = string.match(marker, '^(%d+)') or '0'
    redis.call('HSET', K.meta, 'seq', meta.seq)
  end
end
-- Retention first, then the cap (making room for this one); both evict the oldest, each with
-- its NOTIFICATION_DELETED before this notification's seq, so a client that sees the create
-- sees the gap and syncs them.
local evicted = purge_expired(created - tonumber(ARGV[10]), ARGV[4], tonumber(ARGV[9]), meta)
local over = redis.call('ZCARD', K.all) + 1 - tonumber(ARGV[8])
if over > 0 then
  for _, old in ipairs(redis.call('ZRANGE', K.all, 0, over - 1)) do evict(old, ARGV[4], tonumber(ARGV[9])) end
end
-- Evictions change the seq and the counts, and a due `exp` is rewritten: read `meta` again then.
if evicted > 0 or over > 0 or (tonumber(meta.exp) or now_ms() + 1) <= now_ms() then
  meta = read_meta()
end
-- The seq, the counts (what recount(typ, nil, 0) adds: one more unread, unseen notification) and
-- the earliest expiry: one write of `meta`.
local seq = (tonumber(meta.seq) or 0) + 1
local expires = tonumber(ARGV[12])
local writes = {}
local function put(field, value)
  meta[field] = value
  writes[#writes + 1] = field
  writes[#writes + 1] = string.format('%d', value)
end
put('seq', seq)
for _, field in ipairs({'total', 'unseen', 'unread', 't:' .. typ}) do
  put(field, (tonumber(meta[field]) or 0) + 1)
end
if expires and expires < (tonumber(meta.exp) or expires + 1) then put('exp', expires) end
redis.call('HSET', K.meta, unpack(writes))
redis.call('HSET', K.docs, id, seq .. '\n' .. ARGV[3])
redis.call('HSET', K.flags, id, state(0, created, typ, expires))
redis.call('ZADD', K.all, seq, id)
redis.call('ZADD', K.unread, seq, id)
local counts = counts_json(meta)
append_change(seq, counts, '{}', ARGV[11], ARGV[4], tonumber(ARGV[9]))
if ARGV[5] ~= '' then
  redis.call('SET', KEYS[8], ARGV[5] .. '\n' .. seq .. '\n' .. ARGV[3], 'PX', ARGV[6])
  local ttl = tonumber(ARGV[6])
  redis.call('ZADD', KEYS[11], created + ttl, KEYS[8])
  redis.call('ZREMRANGEBYSCORE', KEYS[11], '-inf', created)
  redis.call('PEXPIRE', KEYS[11], ttl)
end
if ARGV[15] ~= '' then
  redis.call('HSET', KEYS[12], ARGV[15], ARGV[17])
  redis.call('PEXPIRE', KEYS[12], ARGV[10])
end
touch(tonumber(ARGV[10]))
return {'created', seq, counts}
