-- Creates one broadcast's notification for each user of a group (a broadcast slice's users of
-- one Redis Cluster slot; on a single Redis, any users): `create_one` (create.lua itself, as a
-- function, store/scripts.rs) once per user, each on that user's keys, so every user gets exactly
-- what a single create gives (the claim of its idempotency record, the erase epoch, retention and
-- the cap, seq, counts, the change). No rate limit, no digest: a broadcast's recipients have
-- neither (store/inbox/many.rs).
-- KEYS: per user, 10: the 7 inbox keys, the idempotency record, the erase marker, the index of
-- idempotency records.
-- ARGV: 1 body hash, 2 idempotency TTL ms, 3 createdAt ms, 4 inbox cap, 5 log cap, 6 retention
-- ms, 7 Idempotency-Key; then per user, 5: the id, the type, the notification JSON (seq 0, flags
-- false), the envelope JSON, expiresAt ms ('' = none).
-- Returns one create.lua reply per user, in order.
local users = #KEYS / 10
if users ~= (#ARGV - 7) / 5 then return redis.error_reply('create_many: keys and arguments disagree') end
local replies = {}
for i = 0, users - 1 do
  local k, a = i * 10, 7 + i * 5
  K.meta, K.docs, K.flags, K.all = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  K.unread, K.log, K.unpub = KEYS[k + 5], KEYS[k + 6], KEYS[k + 7]
  replies[i + 1] = create_one(
    {KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], KEYS[k + 6], KEYS[k + 7],
     KEYS[k + 8], false, KEYS[k + 9], KEYS[k + 10], false},
    {ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5],
     ARGV[6], ARGV[7], ARGV[a + 5], '', '0', '', '', ''})
end
return replies
