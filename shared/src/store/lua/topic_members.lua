-- Adds (ARGV[1] = 'add') or removes ('remove') members of a topic, and moves its exact count in
-- the same step. KEYS[1]: the topic's hash; KEYS[1 + i]: the membership bucket of ARGV[1 + i].
-- Returns -1 when the topic does not exist (nothing written), else how many changed.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local changed = 0
for i = 2, #KEYS do
  if ARGV[1] == 'add' then
    changed = changed + redis.call('HSET', KEYS[i], ARGV[i], '')
  else
    changed = changed + redis.call('HDEL', KEYS[i], ARGV[i])
  end
end
if changed ~= 0 then
  local delta = changed
  if ARGV[1] ~= 'add' then delta = -changed end
  redis.call('HINCRBY', KEYS[1], 'subscribers', delta)
end
return changed
