-- The changes after `since`, oldest first, from a consistent snapshot. Writes nothing but
-- evictions (purge_expired).
-- ARGV: 1 since, 2 max count, 3 page budget in bytes: the page stops before the record that would
-- take it past the budget (the first record is always taken), so `since` = the last seq returned
-- continues exactly after it; 4 eviction template (an envelope of this user), 5 log cap,
-- 6 retention ms. Expired notifications are evicted first (their deletes are in the answer).
-- Returns {'resync', head, evicted} when the log no longer reaches back to since + 1 (or since
-- is ahead of the user's seq, as after an idle inbox expired), else
-- {'ok', head, {records...}, evicted}.
local evicted = purge_expired(now_ms() - tonumber(ARGV[6]), ARGV[4], tonumber(ARGV[5]))
local head = tonumber(redis.call('HGET', K.meta, 'seq') or '0')
local since = tonumber(ARGV[1])
if since > head then return {'resync', head, evicted} end
if since == head then return {'ok', head, {}, evicted} end
local first = redis.call('ZRANGE', K.log, 0, 0, 'WITHSCORES')
local oldest = first[2] and tonumber(first[2]) or (head + 1)
if since + 1 < oldest then return {'resync', head, evicted} end
local limit, budget = tonumber(ARGV[2]), tonumber(ARGV[3])
local out, bytes, offset, chunk = {}, 0, 0, 64
while #out < limit do
  local records = redis.call('ZRANGEBYSCORE', K.log, '(' .. since, '+inf', 'LIMIT', offset, math.min(chunk, limit - #out))
  if #records == 0 then break end
  for _, r in ipairs(records) do
    if #out > 0 and bytes + #r > budget then return {'ok', head, out, evicted} end
    bytes = bytes + #r
    table.insert(out, r)
  end
  offset = offset + #records
end
return {'ok', head, out, evicted}
