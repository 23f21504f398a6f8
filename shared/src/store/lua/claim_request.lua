-- Claims an Idempotency-Key for one request of a sender, before anything is written.
-- KEYS[1]: the sender's record ({s:<sender>}:idem:<hash>). ARGV: 1 request hash, 2 TTL ms.
-- Returns 'first' (claimed now), 'retry' (claimed before by the same request) or 'conflict'
-- (claimed before by a different request; nothing changes).
local prev = redis.call('GET', KEYS[1])
if not prev then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 'first'
end
if prev == ARGV[1] then return 'retry' end
return 'conflict'
