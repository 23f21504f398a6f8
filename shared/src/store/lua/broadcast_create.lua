-- Records a broadcast as queued, unless one with this id exists (an Idempotency-Key retry).
-- KEYS[1]: the broadcast's hash. ARGV: 1 retention ms, then field/value pairs.
-- Returns 1 when created, 0 when it existed (nothing written).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fields = {}
for i = 2, #ARGV do fields[i - 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
