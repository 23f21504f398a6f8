-- Replay: queues a message that was sent or dead-lettered again, from its first attempt, behind
-- its notification's waiting messages; a queue that was empty is due at ARGV[3]. A message still
-- queued is left alone (it will be sent anyway).
-- KEYS: 1 ledger, 2 due, 3 the notification's queue.
-- ARGV: 1 message id, 2 notification id, 3 due ms.
-- Returns 1 when queued again, else 0.
local state = redis.call('HGET', KEYS[1], ARGV[1])
if not state or string.sub(state, 1, 7) == 'queued|' then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], 'queued|0')
if redis.call('RPUSH', KEYS[3], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
end
return 1
