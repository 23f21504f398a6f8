-- Decides one escalation step when it comes due, atomically against the inbox state: `fired`
-- unless the notification is gone, archived, or has (ever) the bits of ARGV[3] (read, or seen);
-- then `cancelled` with that reason. A decided step keeps its decision (never fires twice).
-- KEYS[1]: {u:<id>}:flags, KEYS[2]: {u:<id>}:escalations (field `<notificationId>#<step>` →
-- `<status>|<decidedMs>|<reason>|<dueMs>|<step JSON>`).
-- ARGV: 1 notification id, 2 field, 3 cancelling bits, 4 their reason, 5 now ms.
-- Returns {status, reason}; status `unknown` when the step was never planned (or expired).
local rec = redis.call('HGET', KEYS[2], ARGV[2])
if not rec then return {'unknown', ''} end
local status, why, rest = string.match(rec, '^(%a+)|%d*|([^|]*)|(.*)$')
if status ~= 'pending' then return {status or 'unknown', why or ''} end
local v = redis.call('HGET', KEYS[1], ARGV[1])
local bits = v and tonumber(string.match(v, '^(%d+)|'))
if bits == nil then why = 'deleted'
elseif bit.band(bits, 4) ~= 0 then why = 'archived'
elseif bit.band(bits, tonumber(ARGV[3])) ~= 0 then why = ARGV[4]
else why = '' end
status = (why == '') and 'fired' or 'cancelled'
redis.call('HSET', KEYS[2], ARGV[2], status .. '|' .. ARGV[5] .. '|' .. why .. '|' .. rest)
return {status, why}
