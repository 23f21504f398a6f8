-- Moves a user whose publish failed behind every mark set before now + ARGV[2] ms (Redis clock),
-- so a run's oldest-first scan reaches other users first. Never lowers a score, and only touches a
-- user still marked: the score stays at or after every mark set so far, which is what
-- clear_dirty.lua's proof needs. KEYS[1]: index. ARGV: 1 userId, 2 backoff ms. Returns 1 if moved.
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s then return 0 end
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
if tonumber(s) >= due then return 0 end
redis.call('ZADD', KEYS[1], due, ARGV[1])
return 1
