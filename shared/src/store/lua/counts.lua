-- The counts, after evicting expired notifications, so they count none.
-- ARGV: 1 eviction template (an envelope of this user), 2 log cap, 3 retention ms.
-- Returns {evicted, counts JSON}.
local evicted = purge_expired(now_ms() - tonumber(ARGV[3]), ARGV[1], tonumber(ARGV[2]))
return {evicted, counts_json()}
