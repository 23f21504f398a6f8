-- Adds or replaces one entry of a user's capped address book: a Web Push subscription or a device.
-- KEYS[1]: {u:<id>}:pushsubs or {u:<id>}:devices. ARGV: 1 entry id, 2 entry JSON, 3 cap.
-- Returns 1 created, 2 replaced (same endpoint or token, so same id), 0 refused (cap reached).
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1])
if exists == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if exists == 1 then return 2 end
return 1
