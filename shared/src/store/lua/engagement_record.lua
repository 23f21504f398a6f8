-- Adds one read or click to a user's engagement histogram (schedule.rs), unless the user was
-- erased after the event (store/erase.rs): a late analytics record must not bring back a trace of
-- an erased user's habits.
-- KEYS[1] {u:<id>}:engage; KEYS[2] the user's erase marker (`<seq>|<erasedMs>`).
-- ARGV: 1 field (`h<hour of week>`), 2 weight, 3 TTL s, 4 the event's time (ms).
-- Returns 1 if added, 0 if dropped.
local marker = redis.call('GET', KEYS[2])
if marker and tonumber(ARGV[4]) <= tonumber(string.match(marker, '|(%d+)$') or '0') then return 0 end
redis.call('HINCRBYFLOAT', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
