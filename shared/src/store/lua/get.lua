-- One notification, after evicting expired ones.
-- ARGV: 1 id, 2 eviction template (an envelope of this user), 3 log cap, 4 retention ms.
-- Returns {evicted, doc, state}, or {evicted} when there is no such notification (or it has
-- expired and waits for a later eviction).
local cutoff = now_ms() - tonumber(ARGV[4])
local evicted = purge_expired(cutoff, ARGV[2], tonumber(ARGV[3]))
local v = redis.call('HGET', K.flags, ARGV[1])
if not v then return {evicted} end
local _, created, _, expires = parse_state(v)
if expired(created, expires, cutoff, now_ms()) then return {evicted} end
return {evicted, redis.call('HGET', K.docs, ARGV[1]), v}
