-- Records that the user clicked one notification: sets its CLICKED_EVER bit. No seq, no change:
-- a click changes nothing a client shows. Expired notifications are evicted first.
-- ARGV: 1 id, 2 eviction template (an envelope of this user), 3 log cap, 4 retention ms.
-- Returns {'missing', evicted} | {'clicked', 1 if this is the notification's first click else 0,
-- evicted}.
local evicted = purge_expired(now_ms() - tonumber(ARGV[4]), ARGV[2], tonumber(ARGV[3]))
local v = redis.call('HGET', K.flags, ARGV[1])
if not v then return {'missing', evicted} end
local bits, created, typ, expires = parse_state(v)
if has(bits, CLICKED_EVER) then return {'clicked', 0, evicted} end
redis.call('HSET', K.flags, ARGV[1], state(bit.bor(bits, CLICKED_EVER), created, typ, expires))
return {'clicked', 1, evicted}
