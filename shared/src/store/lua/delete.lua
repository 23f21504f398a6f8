-- Deletes one notification and appends NOTIFICATION_DELETED.
-- ARGV: 1 id, 2 envelope JSON, 3 log cap, 4 retention ms.
-- Returns {'missing'} | {'deleted', seq, counts}.
if not remove(ARGV[1]) then return {'missing'} end
local seq = next_seq()
local counts = counts_json()
append_change(seq, counts, '{}', '', ARGV[2], tonumber(ARGV[3]))
touch(tonumber(ARGV[4]))
return {'deleted', seq, counts}
