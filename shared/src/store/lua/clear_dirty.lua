-- Clears a user's dirty mark if nobody re-marked it since the relay read it (score unchanged) and
-- the mark is at or before the cutoff the relay proved safe (see outbox.rs). KEYS[1]: index.
-- ARGV: 1 userId, 2 score the relay read, 3 cutoff ms. Returns 1 if cleared.
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) ~= tonumber(ARGV[2]) or tonumber(s) > tonumber(ARGV[3]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
