-- Herald inbox scripts: the shared prelude, concatenated in front of every user-slot script
-- (store/scripts.rs). Every user script receives the same seven keys first, all hash-tagged
-- {u:<userId}, so one script touches one Redis Cluster slot.
--
-- Per-notification state lives in the `flags` hash as "<bits>|<createdMs>|<type>[|<expiresMs>]".
-- Bits: READ=1 SEEN=2 ARCHIVED=4 (what clients see), and SEEN_EVER=8 READ_EVER=16
-- CLICKED_EVER=32, set the first time the notification is seen, read or clicked and never
-- cleared, so engagement analytics counts each notification's first seen, read and click once
-- however often its flags toggle. `expiresMs` is the notification's own `expiresAt`, when it has
-- one; the `meta` field `exp` holds the earliest one not yet evicted. A change-log record is
-- "<seq>\n<countsJSON>\n<patchJSON>\n<idempotencyKey>\n<writtenMs>\n<envelopeJSON>";
-- the envelope is stored with seq 0 and empty counts, and the reader stamps both (store/record.rs).
local K = {meta = KEYS[1], docs = KEYS[2], flags = KEYS[3], all = KEYS[4], unread = KEYS[5], log = KEYS[6], unpub = KEYS[7]}
local READ, SEEN, ARCHIVED = 1, 2, 4
local SEEN_EVER, READ_EVER, CLICKED_EVER = 8, 16, 32
local VISIBLE = READ + SEEN + ARCHIVED

-- The Redis clock in ms, read once per call: a script is one step, at one time.
local clock_ms = nil
local function now_ms()
  if clock_ms == nil then
    local t = redis.call('TIME')
    clock_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return clock_ms
end

local function has(bits, b) return bit.band(bits, b) ~= 0 end

-- Returns bits, createdMs, type, expiresMs (nil without one).
local function parse_state(v)
  local bits, created, typ, expires = string.match(v, '^(%d+)|(%d+)|([^|]*)|?(%d*)$')
  return tonumber(bits), tonumber(created), typ, tonumber(expires)
end

-- Numbers are written with %d: Lua's own number-to-string conversion switches to exponent form
-- past 14 digits (an expiresAt in the year 9999 is 253402300799000 ms), which parse_state would
-- not read back.
local function state(bits, created, typ, expires)
  local tail = expires and string.format('|%d', expires) or ''
  return string.format('%d|%d|', bits, created) .. typ .. tail
end

-- Whether a notification created at `created` (expiring at `expires`, if set) is gone at `now`
-- with this retention cutoff.
local function expired(created, expires, cutoff, now)
  return created < cutoff or (expires ~= nil and expires <= now)
end

-- What one notification adds to (total, unread, unseen); archived and absent ones add nothing.
local function contribution(bits)
  if bits == nil or has(bits, ARCHIVED) then return 0, 0, 0 end
  return 1, has(bits, READ) and 0 or 1, has(bits, SEEN) and 0 or 1
end

-- Moves the counts from a notification's old state to its new one (nil = absent). Counts are
-- therefore exact by construction: every state change goes through here, in the same script.
local function recount(typ, old, new)
  local t0, r0, s0 = contribution(old)
  local t1, r1, s1 = contribution(new)
  if t1 ~= t0 then redis.call('HINCRBY', K.meta, 'total', t1 - t0) end
  if s1 ~= s0 then redis.call('HINCRBY', K.meta, 'unseen', s1 - s0) end
  if r1 ~= r0 then
    redis.call('HINCRBY', K.meta, 'unread', r1 - r0)
    if redis.call('HINCRBY', K.meta, 't:' .. typ, r1 - r0) <= 0 then redis.call('HDEL', K.meta, 't:' .. typ) end
  end
end

-- The `meta` hash as a table of its fields.
local function read_meta()
  local flat, meta = redis.call('HGETALL', K.meta), {}
  for i = 1, #flat, 2 do meta[flat[i]] = flat[i + 1] end
  return meta
end

-- The counts as JSON: {unread, unseen, total, byType, version}, from `meta` (a table of the meta
-- hash's fields; read here when not given).
local function counts_json(meta)
  meta = meta or read_meta()
  local c = {unread = 0, unseen = 0, total = 0, version = 0}
  local by = {}
  for k, v in pairs(meta) do
    v = tonumber(v)
    if k == 'seq' then c.version = v
    elseif string.sub(k, 1, 2) == 't:' then by[string.sub(k, 3)] = v
    elseif c[k] ~= nil then c[k] = v end
  end
  c.byType = by
  return cjson.encode(c)
end

-- The flags that differ between two states, as JSON with their new values.
local function patch_json(old, new)
  local parts = {}
  for _, f in ipairs({{'read', READ}, {'seen', SEEN}, {'archived', ARCHIVED}}) do
    if has(old, f[2]) ~= has(new, f[2]) then
      table.insert(parts, '"' .. f[1] .. '":' .. tostring(has(new, f[2])))
    end
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- `new` with the "ever" bits of everything seen or read in `old` or `new` (a state written before
-- the ever bits existed still remembers what it shows).
local function remember(old, new)
  local ever = 0
  if has(old, SEEN) or has(new, SEEN) then ever = ever + SEEN_EVER end
  if has(old, READ) or has(new, READ) then ever = ever + READ_EVER end
  return bit.bor(new, ever)
end

-- The engagement a change from `old` to `new` makes for the first time, as JSON
-- ({"seen":true,"read":true}, or {} when none): what analytics counts.
local function first_json(old, new)
  local parts = {}
  for _, f in ipairs({{'seen', SEEN, SEEN_EVER}, {'read', READ, READ_EVER}}) do
    if has(new, f[2]) and not has(old, f[2]) and not has(old, f[3]) then
      table.insert(parts, '"' .. f[1] .. '":true')
    end
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- Removes one notification and its share of the counts. Returns false if it does not exist.
local function remove(id)
  local v = redis.call('HGET', K.flags, id)
  if not v then return false end
  local bits, _, typ = parse_state(v)
  recount(typ, bits, nil)
  redis.call('HDEL', K.flags, id)
  redis.call('HDEL', K.docs, id)
  redis.call('ZREM', K.all, id)
  redis.call('ZREM', K.unread, id)
  return true
end

-- Assigns the next seq.
local function next_seq() return redis.call('HINCRBY', K.meta, 'seq', 1) end

-- Appends a change, marked unpublished, and trims the log to `cap` entries. The trim never
-- drops an unpublished change: the cap yields to the lowest unpublished seq.
local function append_change(seq, counts, patch, idem, envelope, cap)
  redis.call('ZADD', K.log, seq, seq .. '\n' .. counts .. '\n' .. patch .. '\n' .. idem .. '\n' .. now_ms() .. '\n' .. envelope)
  redis.call('ZADD', K.unpub, seq, seq)
  local keep_from = seq - cap + 1
  -- Seqs start at 1, and the lowest unpublished one only lowers `keep_from`: below 2 there is
  -- nothing to trim (a log that has not reached its cap yet).
  if keep_from < 2 then return end
  local lowest = redis.call('ZRANGE', K.unpub, 0, 0)[1]
  if lowest and tonumber(lowest) < keep_from then keep_from = tonumber(lowest) end
  redis.call('ZREMRANGEBYSCORE', K.log, '-inf', '(' .. keep_from)
end

-- A UUIDv7-shaped event id for a change the script itself makes (an eviction): the Redis clock,
-- and bits of a digest of `seed` (unique per user and seq) for the rest.
local function event_id(seed)
  local ms, h = string.format('%012x', now_ms()), redis.sha1hex(seed)
  local variant = string.format('%x', 8 + tonumber(string.sub(h, 4, 4), 16) % 4)
  return string.sub(ms, 1, 8) .. '-' .. string.sub(ms, 9, 12) .. '-7' .. string.sub(h, 1, 3) .. '-'
    .. variant .. string.sub(h, 5, 7) .. '-' .. string.sub(h, 8, 19)
end

-- Removes one notification the inbox drops by itself (retention, cap) and appends its
-- NOTIFICATION_DELETED, so clients drop it too. `source` is any envelope JSON of this user (the
-- caller's own change, or an eviction template): its version, user and time are reused.
local decoded_source, decoded = nil, nil
local function evict(id, source, cap)
  if not remove(id) then
    redis.call('ZREM', K.all, id)
    redis.call('ZREM', K.unread, id)
    return
  end
  -- A create's envelope can be large: decode it once per call, however many it evicts.
  if decoded_source ~= source then decoded_source, decoded = source, cjson.decode(source) end
  local e = decoded
  local seq = next_seq()
  e.id = event_id(e.userId .. '\n' .. seq .. '\n' .. id)
  e.seq = 0
  e.type = 'NOTIFICATION_DELETED'
  e.payload = {id = id, counts = {unread = 0, unseen = 0, total = 0, byType = {}, version = 0}}
  append_change(seq, counts_json(), '{}', '', cjson.encode(e), cap)
end

-- Evicts expired notifications: those created before `cutoff` (ms), oldest first, then those
-- whose own `expiresAt` has passed (looked for only once `meta.exp`, the earliest, is due: one
-- pass over `flags`, at most INBOX_CAP entries). At most 64 per call, so every call's work is
-- bounded. Every inbox script but the relay's runs it first, so what it answers (counts, pages, a
-- notification) excludes expired notifications (beyond 64 at once, the next calls finish the job;
-- list and get also skip what is left). `meta`: the meta hash as read_meta() read it earlier in
-- this call, if the caller has it (its `exp` is then not read again). Returns how many it evicted.
local function purge_expired(cutoff, source, cap, meta)
  local evicted = 0
  -- The oldest one at a time: when nothing has expired, one ZRANGE and one HGET.
  while evicted < 64 do
    local old = redis.call('ZRANGE', K.all, 0, 0)[1]
    if not old then break end
    local _, c = parse_state(redis.call('HGET', K.flags, old) or '0|0|')
    if c >= cutoff then break end
    evict(old, source, cap)
    evicted = evicted + 1
  end
  local due
  if meta then due = tonumber(meta.exp) else due = tonumber(redis.call('HGET', K.meta, 'exp') or '') end
  local now = now_ms()
  if due == nil or due > now then return evicted end
  local flat, next_due = redis.call('HGETALL', K.flags), nil
  for i = 1, #flat, 2 do
    local _, _, _, expires = parse_state(flat[i + 1])
    if expires ~= nil then
      if expires <= now and evicted < 64 then
        evict(flat[i], source, cap)
        evicted = evicted + 1
      elseif next_due == nil or expires < next_due then
        next_due = expires
      end
    end
  end
  if next_due then redis.call('HSET', K.meta, 'exp', string.format('%d', next_due)) else redis.call('HDEL', K.meta, 'exp') end
  return evicted
end

-- Every write renews the retention of the whole inbox, so an idle user's inbox expires as a unit.
local function touch(ttl_ms)
  for _, k in ipairs({K.meta, K.docs, K.flags, K.all, K.unread, K.log, K.unpub}) do
    redis.call('PEXPIRE', k, ttl_ms)
  end
end
