-- Records a notification's escalation steps as pending (escalations.rs), unless the user was
-- erased after that notification (store/erase.rs): a late create must not bring the user back.
-- KEYS[1] {u:<id>}:escalations; KEYS[2] the user's erase marker.
-- ARGV: 1 the notification's seq, 2 TTL s, then field/value pairs (HSETNX: a redelivered create
-- changes nothing).
-- Returns 1 if recorded, 0 if dropped.
local marker = redis.call('GET', KEYS[2])
if marker and tonumber(ARGV[1]) <= tonumber(string.match(marker, '^(%d+)') or '0') then return 0 end
for i = 3, #ARGV, 2 do redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
