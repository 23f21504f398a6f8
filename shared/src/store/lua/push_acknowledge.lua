-- Drops the unacknowledged outcome from records whose outcome Kafka has now acknowledged, if the
-- record is still the same hop. KEYS[1]: {u:<id>}:sends. ARGV: field, hop pairs.
local n = 0
for i = 1, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if old then
    local hop, status = string.match(old, '^(%d+)|([^|]*)|')
    if hop == ARGV[i + 1] then
      redis.call('HSET', KEYS[1], ARGV[i], hop .. '|' .. status .. '|')
      n = n + 1
    end
  end
end
return n
