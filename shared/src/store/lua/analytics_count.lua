-- Counts one Kafka partition's batch exactly once (the analytics function, one call per
-- partition per batch). Everything it touches is in the partition's slot {an:<shard>}.
--
-- KEYS[1]: the partition's watermark (the highest offset already counted).
-- KEYS[2..]: the day hashes this batch touches.
-- ARGV[1]: TTL of every key written, in seconds.
-- ARGV[2]: the batch's last offset (records without counts, poison ones included, move it too).
-- ARGV[3]: the first offset of a record with counts; ARGV[4]: how many records have counts.
-- ARGV[5]: m, then m triples (day d, meaning KEYS[d + 2]; field "<type>|<channel>|<outcome>";
--          count): the whole batch's counts, summed.
-- ARGV[6 + 3m ..] (optional, "detail"): per record with counts, in offset order: offset, k, and
--          k pairs (d, field).
--
-- A record at or below the watermark was counted by an earlier delivery and is skipped; the rest
-- are added and the watermark moves to the batch's last offset, in one atomic step. The usual
-- batch starts above the watermark and adds the sums; a redelivered one ends at or below it and
-- adds nothing. Only a batch that straddles the watermark needs the detail: without it the reply
-- is {-1, watermark} and the caller sends it again with the detail.
-- Returns {records counted, watermark before} (watermark -1: nothing counted before).
local ttl = tonumber(ARGV[1])
local last = tonumber(ARGV[2])
local first = tonumber(ARGV[3])
local wm = tonumber(redis.call('GET', KEYS[1]) or '-1')
if last <= wm then
  return {0, wm}
end
local m = tonumber(ARGV[5])
local detail = 6 + 3 * m
local touched = {}

local counted
if wm < first then
  counted = tonumber(ARGV[4])
  for i = 6, 5 + 3 * m, 3 do
    local k = tonumber(ARGV[i]) + 2
    redis.call('HINCRBY', KEYS[k], ARGV[i + 1], ARGV[i + 2])
    touched[k] = true
  end
elseif #ARGV < detail then
  return {-1, wm}
else
  counted = 0
  local sums, order = {}, {}
  local i = detail
  while i <= #ARGV do
    local offset, n = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
    i = i + 2
    if offset > wm then
      counted = counted + 1
      for j = i, i + 2 * n - 1, 2 do
        local id = ARGV[j] .. '\n' .. ARGV[j + 1]
        if sums[id] == nil then
          sums[id] = 0
          order[#order + 1] = {id, tonumber(ARGV[j]) + 2, ARGV[j + 1]}
        end
        sums[id] = sums[id] + 1
      end
    end
    i = i + 2 * n
  end
  for _, e in ipairs(order) do
    redis.call('HINCRBY', KEYS[e[2]], e[3], sums[e[1]])
    touched[e[2]] = true
  end
end

for k in pairs(touched) do
  redis.call('EXPIRE', KEYS[k], ttl)
end
-- The offset as given, never re-formatted by Lua (which would print large numbers as 1e+15).
redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl)
return {counted, wm}
