-- Admits one request of a sender that carries an Idempotency-Key, before anything is written: the
-- sender's rate limit (gcra_lib.lua in front), then the claim of the key, in one call.
-- KEYS[1]: the sender's record ({s:<sender>}:idem:<hash>), KEYS[2]: the sender's rate key (same
-- slot). ARGV: 1 request hash, 2 TTL ms, 3 the limit's emission interval ms, 4 its burst.
-- Returns {'limited', retryAfterMs} (nothing consumed, nothing claimed), else {'first'} (claimed
-- now), {'retry'} (claimed before by the same request) or {'conflict'} (claimed before by a
-- different request; nothing changes but the rate the request used).
local allowed, retry_ms = gcra(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]), 1)
if allowed == 0 then return {'limited', retry_ms} end
local prev = redis.call('GET', KEYS[1])
if not prev then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {'first'}
end
if prev == ARGV[1] then return {'retry'} end
return {'conflict'}
