-- Ends a queue head's journey (sent, or dead-lettered) and hands over the next message of the
-- notification: the caller keeps the queue (its lease renewed) while one waits, and the schedule
-- entry goes when the queue is empty. Nothing happens if the head is not ARGV[1] any more.
-- KEYS: 1 ledger, 2 the notification's queue, 3 due.
-- ARGV: 1 message id, 2 its final ledger value, 3 notification id, 4 lease end ms.
-- Returns the next message id, or nil.
if redis.call('LINDEX', KEYS[2], 0) ~= ARGV[1] then
  return false
end
redis.call('LPOP', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local next_id = redis.call('LINDEX', KEYS[2], 0)
if next_id then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
  return next_id
end
redis.call('ZREM', KEYS[3], ARGV[3])
return false
