-- The changes after `since`, oldest first, from a consistent snapshot. Read-only.
-- ARGV: 1 since, 2 max count.
-- Returns {'resync', head} when the log no longer reaches back to since + 1 (or since is ahead
-- of the user's seq, as after an idle inbox expired), else {'ok', head, {records...}}.
local head = tonumber(redis.call('HGET', K.meta, 'seq') or '0')
local since = tonumber(ARGV[1])
if since > head then return {'resync', head} end
if since == head then return {'ok', head, {}} end
local first = redis.call('ZRANGE', K.log, 0, 0, 'WITHSCORES')
local oldest = first[2] and tonumber(first[2]) or (head + 1)
if since + 1 < oldest then return {'resync', head} end
return {'ok', head, redis.call('ZRANGEBYSCORE', K.log, '(' .. since, '+inf', 'LIMIT', 0, tonumber(ARGV[2]))}
