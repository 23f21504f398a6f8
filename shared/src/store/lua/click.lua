-- Records that the user clicked one notification: sets its CLICKED_EVER bit. No seq, no change:
-- a click changes nothing a client shows.
-- ARGV: 1 id. Returns {'missing'} | {'clicked', 1 if this is the notification's first click else 0}.
local v = redis.call('HGET', K.flags, ARGV[1])
if not v then return {'missing'} end
local bits, created, typ = parse_state(v)
if has(bits, CLICKED_EVER) then return {'clicked', 0} end
redis.call('HSET', K.flags, ARGV[1], state(bit.bor(bits, CLICKED_EVER), created, typ))
return {'clicked', 1}
