-- Admits a notification's outcome history write for its user, unless the user was erased after
-- it (store/erase.rs), and indexes the notification under the user so an erase finds it.
-- KEYS[1] the user's erase marker; KEYS[2] the user's `histories` index.
-- ARGV[1] the notification id; ARGV[2] its seq ('' when the record does not carry one);
-- ARGV[3] the record's time ms (compared with the erase time when there is no seq);
-- ARGV[4] now ms; ARGV[5] how long the index keeps an id ms.
-- Returns 1 (admitted) or 0 (a record from before the erase: dropped).
local marker = redis.call('GET', KEYS[1])
if marker then
  local erased_seq, erased_ms = string.match(marker, '^(%d+)|(%d+)')
  if ARGV[2] ~= '' then
    if tonumber(ARGV[2]) <= tonumber(erased_seq) then return 0 end
  elseif tonumber(ARGV[3]) <= tonumber(erased_ms) then
    return 0
  end
end
local now = tonumber(ARGV[4])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[5]))
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
