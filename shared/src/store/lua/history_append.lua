-- Appends entries to a notification's outcome history, each unless its field is there already,
-- unless an erase left its tombstone (store/erase.rs). Sent as EVAL in a pipeline (analytics.rs).
-- KEYS[1] {n:<id>}:outcomes. ARGV[1] the tombstone field; ARGV[2] TTL s; then field, value pairs.
-- Returns how many entries were new, or -1 for a tombstone.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return -1 end
local added = 0
for i = 3, #ARGV, 2 do added = added + redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return added
