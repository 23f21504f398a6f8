-- Erases one user's slot, or only reads what an erase must also clean outside it (store/erase.rs).
-- KEYS[1] the erase marker; KEYS[2] meta, KEYS[3] all, KEYS[4] conns, KEYS[5] devices,
-- KEYS[6] sends, KEYS[7] retry, KEYS[8] histories, KEYS[9] idems; KEYS[10..] every erasable key
-- of the slot (keys.rs USER_KEY_SUFFIXES).
-- ARGV[1] 'peek' (read only) or 'erase'; ARGV[2] the marker's TTL ms; ARGV[3] now ms.
-- Returns {seq, {connection ids}, {device ids}, {notification ids}, {retry entry ids}}: `seq` is
-- the user's last seq (the marker's, if higher); the notification ids are the inbox's, those with
-- an outcome history, and those with send records.
-- 'erase' then deletes the idempotency records the index names (all in this slot, so the
-- script stays in one slot without naming them), every erasable key, and writes the marker
-- `<seq>|<now ms>`, in one atomic step.
local seq = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
local marker = redis.call('GET', KEYS[1])
if marker then
  local before = tonumber(string.match(marker, '^(%d+)') or '0')
  if before > seq then seq = before end
end
local ids, seen = {}, {}
local function add(id)
  if id and id ~= '' and not seen[id] then seen[id] = true; ids[#ids + 1] = id end
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do add(id) end
for _, id in ipairs(redis.call('ZRANGE', KEYS[8], 0, -1)) do add(id) end
for _, field in ipairs(redis.call('HKEYS', KEYS[6])) do add(string.match(field, '^([^|]*)|')) end
local reply = {seq, redis.call('HKEYS', KEYS[4]), redis.call('HKEYS', KEYS[5]), ids, redis.call('HKEYS', KEYS[7])}
if ARGV[1] ~= 'erase' then return reply end
for _, key in ipairs(redis.call('ZRANGE', KEYS[9], 0, -1)) do redis.call('DEL', key) end
for i = 10, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('SET', KEYS[1], string.format('%d|%d', seq, tonumber(ARGV[3])), 'PX', ARGV[2])
return reply
