-- Records the seqs a `delivery` invocation fully handled and releases its claim
-- (connections.rs).
-- KEYS[1] the user's claim (`delivering`); KEYS[2] the delivered seqs; KEYS[3] the user's erase
-- marker: seqs at or below its seq (from before the erase, store/erase.rs) are not recorded.
-- ARGV[1] the claim token; ARGV[2] how many seqs to keep; ARGV[3] their TTL in seconds;
-- ARGV[4..] the seqs handled (none: only release).
-- The seqs are recorded even if the claim has expired meanwhile: they were handled. The claim is
-- released only if this token still holds it. Returns 1 if it was released.
local marker = redis.call('GET', KEYS[3])
local erased = marker and tonumber(string.match(marker, '^(%d+)') or '0') or 0
local added = 0
-- ZADD in chunks: unpack's stack is limited.
for from = 4, #ARGV, 1000 do
  local members = {}
  for i = from, math.min(from + 999, #ARGV) do
    if tonumber(ARGV[i]) > erased then
      members[#members + 1] = ARGV[i]
      members[#members + 1] = ARGV[i]
    end
  end
  if #members > 0 then
    redis.call('ZADD', KEYS[2], unpack(members))
    added = added + 1
  end
end
if added > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[2]) + 1))
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
