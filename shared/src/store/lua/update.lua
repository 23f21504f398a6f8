-- Sets and clears flag bits on one notification, recounts, and appends NOTIFICATION_UPDATED with
-- only the fields that changed, and which engagement (seen, read) happened for the first time.
-- A no-op change assigns no seq and appends nothing.
-- ARGV: 1 id, 2 bits to set, 3 bits to clear (visible bits only), 4 envelope JSON, 5 log cap,
-- 6 retention ms. Expired notifications are evicted first (purge_expired).
-- Returns {'missing'} | {'unchanged', doc, bits} |
-- {'updated', seq, counts, doc, bits, stored patch: the patch JSON with "first": {...}}.
purge_expired(now_ms() - tonumber(ARGV[6]), ARGV[4], tonumber(ARGV[5]))
local id = ARGV[1]
local v = redis.call('HGET', K.flags, id)
if not v then return {'missing'} end
local old, created, typ, expires = parse_state(v)
local shown = bit.band(bit.bor(old, tonumber(ARGV[2])), bit.bnot(tonumber(ARGV[3])))
local doc = redis.call('HGET', K.docs, id)
if bit.band(shown, VISIBLE) == bit.band(old, VISIBLE) then return {'unchanged', doc, bit.band(old, VISIBLE)} end
local new = remember(old, shown)
redis.call('HSET', K.flags, id, state(new, created, typ, expires))
if has(new, READ) then
  redis.call('ZREM', K.unread, id)
else
  redis.call('ZADD', K.unread, redis.call('ZSCORE', K.all, id), id)
end
recount(typ, old, new)
local seq = next_seq()
local counts = counts_json()
local patch = patch_json(old, new)
local stored = string.sub(patch, 1, -2) .. (patch == '{}' and '' or ',') .. '"first":' .. first_json(old, new) .. '}'
append_change(seq, counts, stored, '', ARGV[4], tonumber(ARGV[5]))
touch(tonumber(ARGV[6]))
return {'updated', seq, counts, doc, bit.band(new, VISIBLE), stored}
