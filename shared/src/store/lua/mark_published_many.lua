-- Marks a group of users' changes published (the outbox, outbox.rs), once Kafka acknowledged them.
-- KEYS[i]: user i's index of unpublished changes. ARGV: per user in order, the number of its seqs,
-- then those seqs. Returns how many users it marked.
local a = 1
for i = 1, #KEYS do
  local n = tonumber(ARGV[a])
  redis.call('ZREM', KEYS[i], unpack(ARGV, a + 1, a + n))
  a = a + n + 1
end
return #KEYS
