-- Deletes one notification and appends NOTIFICATION_DELETED.
-- ARGV: 1 id, 2 envelope JSON, 3 log cap, 4 retention ms. Expired ones are evicted first.
-- Returns {'missing'} | {'deleted', seq, counts}.
purge_expired(now_ms() - tonumber(ARGV[4]), ARGV[2], tonumber(ARGV[3]))
if not remove(ARGV[1]) then return {'missing'} end
local seq = next_seq()
local counts = counts_json()
append_change(seq, counts, '{}', '', ARGV[2], tonumber(ARGV[3]))
touch(tonumber(ARGV[4]))
return {'deleted', seq, counts}
