-- One page of the inbox, newest first. Writes nothing but evictions (purge_expired).
-- ARGV: 1 status ('any'|'read'|'unread'), 2 archived ('false'|'true'|'any'), 3 type ('' = any),
-- 4 cursor: list below this seq ('+inf' for the first page), 5 page size, 6 oldest createdAt kept,
-- 7 page budget in bytes: the page stops before the document that would take it past the budget
-- (the first document is always taken), so the next page starts right after the last one returned,
-- 8 eviction template (an envelope of this user), 9 log cap. Older ones are evicted first.
-- Returns {more (0|1), evicted, doc1, bits1, doc2, bits2, ...}.
local src = ARGV[1] == 'unread' and K.unread or K.all
local limit, min_created, budget = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local max = ARGV[4] == '+inf' and '+inf' or ('(' .. ARGV[4])
local out, found, bytes, offset, chunk = {0, purge_expired(min_created, ARGV[8], tonumber(ARGV[9]))}, 0, 0, 0, 64
local now = now_ms()
while true do
  local ids = redis.call('ZREVRANGEBYSCORE', src, max, '-inf', 'LIMIT', offset, chunk)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local v = redis.call('HGET', K.flags, id)
    if v then
      local bits, created, typ, expires = parse_state(v)
      local wanted = not expired(created, expires, min_created, now)
        and (ARGV[1] == 'any' or (ARGV[1] == 'read') == has(bits, READ))
        and (ARGV[2] == 'any' or (ARGV[2] == 'true') == has(bits, ARCHIVED))
        and (ARGV[3] == '' or ARGV[3] == typ)
      if wanted then
        if found == limit then out[1] = 1; return out end
        local doc = redis.call('HGET', K.docs, id) or ''
        if found > 0 and bytes + #doc > budget then out[1] = 1; return out end
        found = found + 1
        bytes = bytes + #doc
        table.insert(out, doc)
        table.insert(out, bits)
      end
    end
  end
  offset = offset + chunk
end
return out
