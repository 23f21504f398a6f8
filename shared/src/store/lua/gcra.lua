-- One rate limit on its own (gcra_lib.lua in front). KEYS[1]: the limit's
-- theoretical-arrival-time key. ARGV: 1 emission interval ms, 2 burst, 3 cost.
-- Returns {1, 0} when allowed, {0, retryAfterMs} when not (nothing is consumed then).
local allowed, retry_ms = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
return {allowed, retry_ms}
