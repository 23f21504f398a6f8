-- The changes after `since`, oldest first, from a consistent snapshot. Writes nothing but
-- evictions (purge_expired).
-- ARGV: 1 since, 2 max count, 3 eviction template (an envelope of this user), 4 log cap,
-- 5 retention ms. Expired notifications are evicted first (their deletes are in the answer).
-- Returns {'resync', head, evicted} when the log no longer reaches back to since + 1 (or since
-- is ahead of the user's seq, as after an idle inbox expired), else
-- {'ok', head, {records...}, evicted}.
local evicted = purge_expired(now_ms() - tonumber(ARGV[5]), ARGV[3], tonumber(ARGV[4]))
local head = tonumber(redis.call('HGET', K.meta, 'seq') or '0')
local since = tonumber(ARGV[1])
if since > head then return {'resync', head, evicted} end
if since == head then return {'ok', head, {}, evicted} end
local first = redis.call('ZRANGE', K.log, 0, 0, 'WITHSCORES')
local oldest = first[2] and tonumber(first[2]) or (head + 1)
if since + 1 < oldest then return {'resync', head, evicted} end
return {'ok', head, redis.call('ZRANGEBYSCORE', K.log, '(' .. since, '+inf', 'LIMIT', 0, tonumber(ARGV[2])), evicted}
