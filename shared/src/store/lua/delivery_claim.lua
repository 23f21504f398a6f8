-- Claims a user's records of one `delivery` batch before anything is posted (connections.rs).
-- KEYS[1] the user's claim (`delivering`); KEYS[2] the delivered seqs; KEYS[3] the connections;
-- KEYS[4] the user's erase marker.
-- ARGV[1] the invocation's claim token; ARGV[2] the lease in ms; ARGV[3..] the batch's seqs.
-- A seq at or below the erase marker's (a record from before the user's erase, store/erase.rs)
-- reads as delivered, so nothing is posted or produced for it; when every seq is such, no claim
-- is taken and no connection read (the erased slot stays empty).
--
-- Held by another token: returns {0, ms left on that lease}, and changes nothing.
-- Otherwise takes (or renews) the claim for ARGV[2] ms and returns
-- {1, {1 or 0 per seq: already delivered}, {connection id, entry, ...}}.
-- Everything is read before the claim is written, so a failed read (a key of the wrong type)
-- leaves no claim behind.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return {0, redis.call('PTTL', KEYS[1])}
end
local marker = redis.call('GET', KEYS[4])
local erased = marker and tonumber(string.match(marker, '^(%d+)') or '0') or 0
local delivered = {}
local live = 0
-- ZMSCORE in chunks: unpack's stack is limited.
for from = 3, #ARGV, 1000 do
  local to = math.min(from + 999, #ARGV)
  local scores = redis.call('ZMSCORE', KEYS[2], unpack(ARGV, from, to))
  for i = 1, to - from + 1 do
    local gone = scores[i] or tonumber(ARGV[from + i - 1]) <= erased
    delivered[#delivered + 1] = gone and 1 or 0
    if not gone then live = live + 1 end
  end
end
if #ARGV >= 3 and live == 0 and erased > 0 then return {1, delivered, {}} end
local connections = redis.call('HGETALL', KEYS[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, delivered, connections}
