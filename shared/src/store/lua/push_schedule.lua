-- Writes a retry-schedule entry in its user's slot (ledger.rs), unless the user was erased after
-- the entry's notification (store/erase.rs).
-- KEYS[1] {u:<id>}:retry; KEYS[2] the user's erase marker.
-- ARGV: 1 entry id, 2 entry JSON, 3 TTL s, 4 the notification's seq.
-- Returns 1 if written (the caller then indexes it in {push}:due), 0 if dropped.
local marker = redis.call('GET', KEYS[2])
if marker and tonumber(ARGV[4]) <= tonumber(string.match(marker, '^(%d+)') or '0') then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
