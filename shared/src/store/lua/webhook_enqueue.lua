-- Puts a message in a webhook's ledger and behind its notification's waiting messages, unless the
-- ledger knows it already (a redelivered Kafka record: nothing to do). Prunes a few entries older
-- than the replay window that are not queued. When the queue was empty the caller owns it: its
-- schedule entry is a lease until ARGV[5], so a drain takes over if the caller dies.
-- KEYS: 1 ledger, 2 messages, 3 log, 4 due, 5 the notification's queue.
-- ARGV: 1 message id, 2 message JSON, 3 event time ms, 4 notification id, 5 lease end ms,
--       6 prune before ms.
-- Returns -1 known already, 0 queued behind another message, 1 queued first (the caller sends).
if redis.call('HSETNX', KEYS[1], ARGV[1], 'queued|0') == 0 then
  return -1
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[6], 'LIMIT', 0, 20)
for _, id in ipairs(old) do
  local state = redis.call('HGET', KEYS[1], id)
  if not state or string.sub(state, 1, 7) ~= 'queued|' then
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
  end
end
if redis.call('RPUSH', KEYS[5], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
  return 1
end
return 0
