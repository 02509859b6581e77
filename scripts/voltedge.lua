#!lua name=voltedge
-- VoltEdge data library: Redis Functions (Redis 7.0 or later, standalone).
local VERSION = 2

--[[
Load:   redis-cli -x FUNCTION LOAD REPLACE < scripts/voltedge.lua   (or: edgectl lua load)
        Services load it themselves at start and after a Redis restart.
Keys:   every function declares 0 keys and names its keys itself; the names
        below must match internal/keys.
Ids:    channel ids, point ids, model ids and point names are 1..128 bytes
        with no ':', no space or control byte and no glob character (* ? [ ]).
Values: strict decimal numbers in JSON number syntax: optional '-', an
        integer part without leading zeros, an optional fraction and an
        optional exponent ("220.5", "-3", "0", "1e-3"; not "", "abc", "nan",
        "inf", "0x10", " 5", "+5", ".5", "05"), at most 64 bytes, finite.
        The value string is stored and published exactly as given.
Times:  Unix milliseconds, decimal digits without leading zeros (at most 15).
Errors: error replies start with "ERR <function>" and name the ids, the
        argument position or the hash field and the offending content.

FCALL sync_measurement 0 <channel> <point> <value> [ts_ms]
  Stores one sample. ts_ms defaults to the server clock (TIME).
    HSET comsrv:{channel}:m <point> <value>
    HSET comsrv:{channel}:t <point> <ts>
    HGET mapping "{channel}:{point}"  -> "{model}:{point_name}" (split at the first ':')
  If mapped:
    HSET modsrv:{model} <point_name> <value>
    HSET modsrv:{model}:t <point_name> <ts>
    PUBLISH update:{model} <update payload>
    alarm check (see below)
  Returns: status "OK".
  Errors:  wrong argument count, invalid id, non-numeric value or bad ts_ms:
           error reply, nothing written.
           Malformed mapping entry or non-numeric alarm limit: the raw value
           is still written (and, for a bad limit, the model value too), the
           error is counted in comsrv:{channel}:status (see sync errors) and
           the reply is an error naming the hash field and its content.

FCALL sync_batch 0 <channel> <ts_ms> <n> <p1> <v1> ... <pn> <vn> [<channel> <ts_ms> <n> ...]
  Stores one or more groups (one group per device response) in one call.
  Per group:
    HSET comsrv:{channel}:m p1 v1 ... pn vn        (one command)
    HSET comsrv:{channel}:t p1 ts ... pn ts        (one command)
  Then for all groups together:
    HMGET mapping "{channel}:{p1}" ...             (one command; HGETALL mapping
                                                    instead when it is a listpack, see Reads)
  Then per model touched by the call (values of all groups merged; a point
  given twice keeps its last value):
    HSET modsrv:{model} name value ...             (one command)
    HSET modsrv:{model}:t name ts ...              (one command)
    PUBLISH update:{model} <update payload>        (exactly one per model per call; ts = the largest ts)
  Then one alarm check over all mapped points of the call.
  A bad point never aborts the call: a point with an invalid id or a
  non-numeric value is skipped and written nowhere; a point whose mapping
  entry is malformed keeps its raw value in comsrv:{channel}:m/t and is
  not forwarded; a non-numeric alarm limit skips that limit. Each is
  counted as a sync error.
  At most 1000 points per group.
  Returns: array {points_written, points_mapped, errors, alarm_events, first_error_message}
           (first_error_message is "" when errors is 0).
  Errors:  malformed structure (no groups, missing <channel> <ts_ms> <n>,
           invalid channel id, bad ts_ms, n not a count, fewer point/value
           arguments than n announces): error reply naming the argument
           position (1 = first argument after numkeys), nothing written.

Sync errors (both sync functions), per channel:
    HINCRBY comsrv:{channel}:status sync_errors <k>
    HSET comsrv:{channel}:status last_sync_error "<message>" last_sync_error_at <ts>
  The message names the function, channel, point, the offending value,
  mapping or limit and the reason; ts is the sample time.

Update payload (PUBLISH update:{model}), JSON:
    {"model":"power_meter","ts":1732212345678,"values":{"voltage":220.5,"current":3.1}}
  model and names are JSON strings; ts and values are JSON numbers whose
  text is exactly the stored value string.

Alarm check, per mapped point, ref = "{model}:{point_name}", value v:
    high = alarm:threshold[ref]   v > high raises a "high" alarm
    low  = alarm:low[ref]         v < low raises a "low" alarm
    hyst = alarm:hysteresis[ref]  default 0, must be >= 0
    alarm:active[ref]             JSON {"kind":"high"|"low","value":V,"limit":L,"ts":T}
  An alarm is raised once, on the crossing, and not repeated while active.
  A high alarm clears when v <= high - hyst or the threshold is deleted;
  a low alarm clears when v >= low + hyst or the low limit is deleted.
  A value that jumps from an active high alarm to below low clears the high
  alarm and raises a low one (and the reverse).
  The limits are read with one HMGET (or HGETALL, see Reads) each on
  alarm:threshold, alarm:low and alarm:active, skipping empty hashes;
  alarm:hysteresis is read only for refs with an active alarm.
  Raise: HSET alarm:active ref <json>
         XADD alarm:events MAXLEN ~ 10000 * type raise model M point P kind K value V limit L ts T
  Clear: HDEL alarm:active ref
         XADD alarm:events MAXLEN ~ 10000 * type clear model M point P kind K value V limit L ts T
         (L is the limit the alarm was raised with, V the value that cleared it)
  A non-numeric limit or hysteresis, or an unreadable alarm:active entry
  (which is then deleted), is a sync error; the other limit still applies.

Reads: a hash in the listpack encoding (a small hash) answers each HMGET
  field with a linear search, so when a call looks up 32 fields or more in
  such a hash (OBJECT ENCODING), the hash is read whole with HGETALL
  instead. The results are those of HMGET: a call runs atomically and
  writes no hash it reads before reading it.

Memo tables: the Lua state of the library lives on between calls, and the
  library keeps results of pure functions there: the split of a mapping
  entry "{model}:{point_name}" (keyed by the entry text itself, so a changed
  mapping is a new key and applies on the next sample; this is not a cache
  of the mapping, which every call reads), valid ids, "{channel}:{point}"
  strings, key names, JSON-quoted names, the numbers of valid values, and
  reusable buffers. A hash read whole is rebuilt only when its HGETALL reply
  differs from the previous one. Every table is bounded: the memo tables
  are emptied at the start of a call once they exceed 50000 entries (10000
  for values), buffers over 4096 entries are dropped after their call.

FCALL send_control 0 <model> <control> <value> [ttl_ms]
    HGET mapping:reverse "{model}:{control}" -> "{channel}:{point}"
    id = INCR cmd:seq
    HSET cmd:{channel} <point> <value>
    LPUSH cmd:{channel}:queue {"id":id,"channel":"..","point":"..","value":<number>,
                               "model":"..","control":"..","ts":ms,"deadline":ms}
    LTRIM cmd:{channel}:queue 0 999       (the oldest commands beyond 1000 are dropped)
    SADD cmd:pending <channel>
    PUBLISH cmd:{channel} "<point>:<value>"
  ttl_ms defaults to 30000; deadline = ts + ttl_ms (ts is the server clock).
  Returns: the command id (integer).
  Errors:  bad arguments, missing or malformed mapping:reverse entry:
           error reply, nothing written.

FCALL_RO voltedge_version 0
  Returns: VERSION (integer).

Note: Redis 7.0 hides the standard libraries (string, table, math, cjson)
and redis.call while a library is being loaded, so the local aliases below
are bound by the first call of any function (bind()).
]]

-- Aliases of library functions, bound on first call (see the note above).
local find, match, sub, byte, format, gsub, concat, sort, floor, huge, json_encode, call, tonumber, unpack, pairs

local function bind()
  find, match, sub, byte = string.find, string.match, string.sub, string.byte
  format, gsub, concat, sort = string.format, string.gsub, table.concat, table.sort
  floor, huge = math.floor, math.huge
  json_encode, call = cjson.encode, redis.call
  tonumber, unpack, pairs = _G.tonumber, _G.unpack, _G.pairs
end

-- Key names (mirror internal/keys).
local KEY_MAPPING = 'mapping'
local KEY_MAPPING_REVERSE = 'mapping:reverse'
local KEY_ALARM_THRESHOLD = 'alarm:threshold'
local KEY_ALARM_LOW = 'alarm:low'
local KEY_ALARM_HYSTERESIS = 'alarm:hysteresis'
local KEY_ALARM_ACTIVE = 'alarm:active'
local KEY_ALARM_EVENTS = 'alarm:events'
local KEY_COMMAND_SEQ = 'cmd:seq'
local KEY_COMMAND_PENDING = 'cmd:pending'

local function key_channel_values(ch) return 'comsrv:' .. ch .. ':m' end
local function key_channel_timestamps(ch) return 'comsrv:' .. ch .. ':t' end
local function key_channel_status(ch) return 'comsrv:' .. ch .. ':status' end
local function key_model_values(model) return 'modsrv:' .. model end
local function key_model_timestamps(model) return 'modsrv:' .. model .. ':t' end
local function key_model_updates(model) return 'update:' .. model end
local function key_command(ch) return 'cmd:' .. ch end
local function key_command_queue(ch) return 'cmd:' .. ch .. ':queue' end

-- Limits.
local MAX_ID = 128             -- bytes in an id
local MAX_NUMBER = 64          -- bytes in a value
local MAX_TS_DIGITS = 15       -- digits in a millisecond time
local MAX_GROUP_POINTS = 1000  -- points in one sync_batch group
local MAX_QUOTE = 64           -- bytes of offending content shown in a message
local ALARM_EVENTS_MAXLEN = '10000'
local COMMAND_QUEUE_LAST = '999'
local DEFAULT_TTL_MS = '30000'
local MAX_TTL_DIGITS = 9

-- Bytes an id must not contain: NUL, control bytes and space, ':', DEL, glob characters.
local BAD_ID_BYTES = '[%z\1- :\127%*%?%[%]]'
-- A reference: two ids joined by ':'.
local REF_PATTERN = '^([^%z\1- :\127%*%?%[%]]+):([^%z\1- :\127%*%?%[%]]+)$'

local function fail(msg)
  return redis.error_reply('ERR ' .. msg)
end

local function escape_byte(c)
  if c == '"' or c == '\\' then return '\\' .. c end
  return format('\\x%02x', byte(c))
end

-- quote shows untrusted content in a message: bounded, control bytes escaped.
local function quote(s)
  local more = ''
  if #s > MAX_QUOTE then
    s = sub(s, 1, MAX_QUOTE)
    more = '...'
  end
  return '"' .. gsub(s, '[%z\1-\31\127"\\]', escape_byte) .. '"' .. more
end

-- id_problem returns nil for a valid id, else the reason it is not.
local function id_problem(s)
  if s == '' then return 'is empty' end
  if #s > MAX_ID then return 'is longer than 128 bytes' end
  if find(s, BAD_ID_BYTES) then
    return "contains ':', a space, a control byte or a glob character"
  end
  return nil
end

-- show prints an id in a message context: as is when valid, quoted otherwise.
local function show(s)
  if id_problem(s) then return quote(s) end
  return s
end

-- is_number reports whether s is a finite number in JSON number syntax.
-- The position captures mark the integer digits (i..j-1) and the fraction (j..k-1).
local function is_number(s)
  local n = #s
  if n == 0 or n > MAX_NUMBER then return false end
  local exp = false
  local i, j, k = match(s, '^%-?()%d+()%.?%d*()$')
  if not i then
    i, j, k = match(s, '^%-?()%d+()%.?%d*()[eE][%+%-]?%d+$')
    if not i then return false end
    exp = true
  end
  if k - j == 1 then return false end -- a '.' without digits
  if j - i > 1 and byte(s, i) == 48 then return false end -- a leading zero
  if exp then
    local v = tonumber(s)
    return v ~= nil and v > -huge and v < huge
  end
  return true
end

-- is_ts reports whether s is a Unix time in milliseconds.
local function is_ts(s)
  local n = #s
  return n > 0 and n <= MAX_TS_DIGITS and find(s, '^%d+$') ~= nil
    and (n == 1 or byte(s, 1) ~= 48)
end

local function now_ms()
  local t = call('TIME')
  return t[1] .. format('%03d', floor(tonumber(t[2]) / 1000))
end

local function json_string(s)
  if find(s, '["\\]') then return json_encode(s) end
  return '"' .. s .. '"'
end

-- split_ref splits "{owner}:{name}" at its ':'; both parts must be valid ids
-- (so the reference holds exactly one ':').
local function split_ref(ref)
  local i = find(ref, ':', 1, true)
  if not i or i == 1 or i == #ref or i > MAX_ID + 1 or #ref - i > MAX_ID then return nil end
  local owner, name = sub(ref, 1, i - 1), sub(ref, i + 1)
  if find(owner, BAD_ID_BYTES) or find(name, BAD_ID_BYTES) then return nil end
  return owner, name
end

-- Memo tables. The Lua state of a library lives on between calls, so these
-- library-scope tables keep the results of pure functions of their keys from
-- one call to the next. They are not a cache of Redis data: a mapping entry
-- is memoised by its own text ("{model}:{point_name}" -> model, name and
-- their JSON form), so a changed mapping is a different key and applies on
-- the next sample. Only valid ids and well-formed entries are kept, so every
-- key is at most 2 * MAX_ID + 1 bytes.
--   memo_channels: channel id -> its key names and { point id -> "{channel}:{point}" }
--   memo_entries:  mapping entry -> entry record (see new_entry), false when malformed
--   memo_models:   model id -> model record: key names, payload head and the
--                  buffers in which a call gathers the model's values
--   memo_numbers:  value -> its number, for values that passed is_number (values
--                  repeat a lot: integer registers, states, quantised readings)
-- The first three are emptied at the start of a call once they hold more
-- than MEMO_LIMIT entries, memo_numbers once it holds more than
-- NUMBER_MEMO_LIMIT (so that noisy values do not flush the others).
local MEMO_LIMIT = 50000
local NUMBER_MEMO_LIMIT = 10000
local BUFFER_KEEP = 4096 -- larger buffers are dropped after the call
local memo_size, memo_numbers_size = 0, 0
local memo_channels, memo_entries, memo_models, memo_numbers = {}, {}, {}, {}
-- memo_counts: the text of a valid sync_batch point count -> the count (at
-- most a few thousand keys of up to 4 digits; never emptied).
local memo_counts = {}
-- call_serial numbers the calls; a record stamped with the current number
-- was touched by the running call.
local call_serial = 0
-- Buffers of sync_batch, reused from call to call (always read with explicit bounds).
local buf_tf, buf_refs, buf_vals, buf_ra = {}, {}, {}, {}

local function begin_call()
  call_serial = call_serial + 1
  if memo_size > MEMO_LIMIT then
    memo_channels, memo_entries, memo_models = {}, {}, {}
    memo_size = 0
  end
  if memo_numbers_size > NUMBER_MEMO_LIMIT then
    memo_numbers, memo_numbers_size = {}, 0
  end
end

-- number_of returns the number in s when is_number(s), else nil (memoised).
local function number_of(s)
  local v = memo_numbers[s]
  if v then return v end
  if not is_number(s) then return nil end
  v = tonumber(s)
  memo_numbers[s] = v
  memo_numbers_size = memo_numbers_size + 1
  return v
end

-- channel_of returns the memo record of a channel id, nil when it is not valid.
local function channel_of(ch)
  local c = memo_channels[ch]
  if c then return c end
  if id_problem(ch) then return nil end
  c = { id = ch, m = key_channel_values(ch), t = key_channel_timestamps(ch), prefix = ch .. ':', refs = {} }
  memo_channels[ch] = c
  memo_size = memo_size + 1
  return c
end

-- new_entry splits a mapping entry and memoises the result: false when the
-- entry is malformed, else an entry record (array, for speed):
--   [1] model record, [2] point name, [3] '"name":', [4] ',"name":',
--   [5] stamp, [6] position of the name in the model's buffers in the call of that stamp.
-- A model record holds the key names and, for the call of its stamp:
--   hv = name, value, ...; ht = name, ts, ...; n = names;
--   parts = the update payload: [1] head, [2] ts, [3] ',"values":{', then
--   name/value pieces from [4], then '}}';
--   ts = the largest ts; ord = its place in the call's model order.
local function new_entry(e)
  if #e > 2 * MAX_ID + 1 then return false end -- malformed; not worth a memo entry
  local model, name = split_ref(e)
  local rec = false
  if model then
    local m = memo_models[model]
    if not m then
      m = {
        model = model, kv = key_model_values(model), kt = key_model_timestamps(model),
        ku = key_model_updates(model),
        parts = { '{"model":' .. json_string(model) .. ',"ts":', '', ',"values":{' },
        hv = {}, ht = {}, n = 0, stamp = 0, ts = '', ord = 0,
      }
      memo_models[model] = m
      memo_size = memo_size + 1
    end
    local q = json_string(name)
    rec = { m, name, q .. ':', ',' .. q .. ':', 0, 0 }
  end
  memo_entries[e] = rec
  memo_size = memo_size + 1
  return rec
end

-- NO_ERRORS is the (empty) error channel list of a call without errors.
local NO_ERRORS = {}

-- Sync state of one call: error counts per channel.
local function new_state(fn)
  return { fn = fn, errors = 0, first = nil, err_by_ch = nil, err_chs = NO_ERRORS, mapped = 0, events = 0 }
end

local function add_error(st, ch, ts, msg)
  st.errors = st.errors + 1
  if not st.first then
    st.first = msg
    st.err_by_ch, st.err_chs = {}, {}
  end
  local e = st.err_by_ch[ch]
  if not e then
    e = { n = 0 }
    st.err_by_ch[ch] = e
    st.err_chs[#st.err_chs + 1] = ch
  end
  e.n = e.n + 1
  e.msg = msg
  e.ts = ts
end

local function flush_errors(st)
  for i = 1, #st.err_chs do
    local ch = st.err_chs[i]
    local e = st.err_by_ch[ch]
    local key = key_channel_status(ch)
    call('HINCRBY', key, 'sync_errors', e.n)
    call('HSET', key, 'last_sync_error', e.msg, 'last_sync_error_at', e.ts)
  end
end

local function point_context(st, ch, point)
  return st.fn .. ' channel=' .. ch .. ' point=' .. point
end

local function alarm_event(kind_of_event, model, name, kind, value, limit, ts)
  call('XADD', KEY_ALARM_EVENTS, 'MAXLEN', '~', ALARM_EVENTS_MAXLEN, '*',
    'type', kind_of_event, 'model', model, 'point', name, 'kind', kind,
    'value', value, 'limit', limit, 'ts', ts)
end

-- parse_active reads an alarm:active entry written by this library.
local function parse_active(s)
  local kind = match(s, '"kind"%s*:%s*"(%a+)"')
  local limit = match(s, '"limit"%s*:%s*([^,}%s]+)')
  if (kind == 'high' or kind == 'low') and limit and is_number(limit) then
    return kind, limit
  end
  return nil
end

-- limit_value returns the number in a limit entry, nil when absent, or
-- false (after counting the error) when it is not a number.
local function limit_value(st, ch, point, ts, ref, hash, s)
  if not s then return nil end
  local v = number_of(s)
  if v then return v end
  add_error(st, ch, ts, point_context(st, ch, point) .. ': ' .. hash
    .. ' ' .. quote(ref) .. ' holds ' .. quote(s) .. ', which is not a number')
  return false
end

-- NONE stands for an HMGET reply of nothing but nils.
local NONE = {}

-- hmget looks fields[1..n] up in chunks, so that no call exceeds Lua's stack for unpack.
local UNPACK_CHUNK = 4000
local function hmget(key, fields, n)
  if n <= UNPACK_CHUNK then return call('HMGET', key, unpack(fields, 1, n)) end
  local out = {}
  for first = 1, n, UNPACK_CHUNK do
    local last = first + UNPACK_CHUNK - 1
    if last > n then last = n end
    local part = call('HMGET', key, unpack(fields, first, last))
    for i = 1, #part do out[first + i - 1] = part[i] end
  end
  return out
end

-- Reading hashes. HMGET looks each field up; in a listpack (the encoding of
-- a small hash) each lookup is a linear search, so a listpack hash is read
-- whole with HGETALL when a call looks up WHOLE_MIN fields or more.
local WHOLE_MIN = 32

-- read_mode returns nil when the hash is empty, true when it should be read
-- whole for n fields, else false.
local function read_mode(key, n)
  local enc = call('OBJECT', 'ENCODING', key)
  if not enc then return nil end
  return n >= WHOLE_MIN and (enc == 'listpack' or enc == 'ziplist')
end

-- Hashes read whole, kept with the HGETALL reply they were built from:
-- key -> { reply, table }. A kept table is reused only while a new reply is
-- equal to its reply field for field and value for value, so it is always
-- the hash as read in the running call.
local whole = {}

-- read_whole returns a hash as a table field -> value.
local function read_whole(key)
  local flat = call('HGETALL', key)
  local nf, kept = #flat, whole[key]
  if kept and #kept[1] == nf then
    local prev = kept[1]
    local i = 1 -- nf is even: fields and values
    while i < nf and flat[i] == prev[i] and flat[i + 1] == prev[i + 1] do i = i + 2 end
    if i > nf then return kept[2] end
  end
  local t = {}
  for i = 1, nf, 2 do t[flat[i]] = flat[i + 1] end
  if nf <= 2 * BUFFER_KEEP then
    whole[key] = { flat, t }
  else
    whole[key] = nil
  end
  return t
end

-- read_limits prepares the alarm check of a call of n points: nil when no
-- alarm hash has an entry, else a record: hl, ll, al = whether
-- alarm:threshold, alarm:low and alarm:active have entries; when each of
-- them is empty or to be read whole (see read_mode), th, tl, ta = ref ->
-- limit / active entry (NONE for an empty hash) and any = a table holding
-- every ref present in one of them. Else the hashes are looked up with
-- HMGET once the points are mapped.
local function read_limits(n)
  local hm, lm, am = read_mode(KEY_ALARM_THRESHOLD, n), nil, nil
  if call('EXISTS', KEY_ALARM_LOW, KEY_ALARM_ACTIVE) > 0 then
    lm, am = read_mode(KEY_ALARM_LOW, n), read_mode(KEY_ALARM_ACTIVE, n)
  end
  if hm == nil and lm == nil and am == nil then return nil end
  local lim = { hl = hm ~= nil, ll = lm ~= nil, al = am ~= nil }
  if hm ~= false and lm ~= false and am ~= false then
    local th, tl, ta = NONE, NONE, NONE
    if hm then th = read_whole(KEY_ALARM_THRESHOLD) end
    if lm then tl = read_whole(KEY_ALARM_LOW) end
    if am then ta = read_whole(KEY_ALARM_ACTIVE) end
    local any = th
    if lm or am then
      any = {}
      for k in pairs(th) do any[k] = true end
      for k in pairs(tl) do any[k] = true end
      for k in pairs(ta) do any[k] = true end
    end
    lim.th, lim.tl, lim.ta, lim.any = th, tl, ta, any
  end
  return lim
end

-- A forwarding job (fw) describes the accepted points of a call, 1..nref:
--   the value of point r is vals[r]; its mapping entry is entries[r], or
--   mt[refs[r]] when the mapping was read whole into mt (nil or false when
--   unmapped);
--   group g holds the points gfirst[g]..glast[g], of channel gch[g] at time
--   gts[g]; point r of group g is args[a] with its
--   value at args[a + 1], where a = goff[g] + 2 * r, or ra[r] when goff[g]
--   is false.

local function entry_of(fw, r)
  if fw.mt then return fw.mt[fw.refs[r]] end
  return fw.entries[r]
end

-- group_of returns the group of point r (the first g with glast[g] >= r).
local function group_of(fw, r)
  local glast = fw.glast
  local lo, hi = 1, fw.ngroups
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if glast[mid] >= r then hi = mid else lo = mid + 1 end
  end
  return lo
end

-- arg_of returns the argument index of point r of group g.
local function arg_of(fw, g, r)
  local off = fw.goff[g]
  if off then return off + 2 * r end
  return fw.ra[r]
end

-- hit_before orders alarm hits as the model hashes are written: by model,
-- then by the position of the point in the model.
local function hit_before(a, b)
  local ma, mb = a[1][1].ord, b[1][1].ord
  if ma ~= mb then return ma < mb end
  return a[1][6] < b[1][6]
end

-- check_point runs the alarm check of one model point: rec is its entry
-- record, r its last occurrence in the call, ref its reference, hs, ls and
-- as its limits and active alarm entry, h its hysteresis entry.
local function check_point(st, fw, rec, r, ref, hs, ls, as, h)
  local m, x2, name = rec[1], rec[6], rec[2]
  local model, vs, ts = m.model, m.hv[x2], m.ht[x2]
  local g = group_of(fw, r)
  local ch, point = fw.gch[g], fw.args[arg_of(fw, g, r)]
  local v = number_of(vs)
  local high = limit_value(st, ch, point, ts, ref, KEY_ALARM_THRESHOLD, hs)
  local low = limit_value(st, ch, point, ts, ref, KEY_ALARM_LOW, ls)
  local kind, active_limit = nil, nil
  if as then
    kind, active_limit = parse_active(as)
    if not kind then
      add_error(st, ch, ts, point_context(st, ch, point) .. ': ' .. KEY_ALARM_ACTIVE
        .. ' ' .. quote(ref) .. ' holds ' .. quote(as) .. ', which is not an alarm; deleted')
      call('HDEL', KEY_ALARM_ACTIVE, ref)
    else
      local hyst = 0
      if h then
        if is_number(h) and tonumber(h) >= 0 then
          hyst = tonumber(h)
        else
          add_error(st, ch, ts, point_context(st, ch, point) .. ': '
            .. KEY_ALARM_HYSTERESIS .. ' ' .. quote(ref) .. ' holds ' .. quote(h)
            .. ', which is not a number >= 0; using 0')
        end
      end
      local clear = false
      if kind == 'high' then
        clear = high == nil or (high and v <= high - hyst)
      else
        clear = low == nil or (low and v >= low + hyst)
      end
      if clear then
        call('HDEL', KEY_ALARM_ACTIVE, ref)
        alarm_event('clear', model, name, kind, vs, active_limit, ts)
        st.events = st.events + 1
        kind = nil
      end
    end
  end
  if not kind then
    local raise, limit = nil, nil
    if high and v > high then
      raise, limit = 'high', hs
    elseif low and v < low then
      raise, limit = 'low', ls
    end
    if raise then
      call('HSET', KEY_ALARM_ACTIVE, ref, '{"kind":"' .. raise .. '","value":' .. vs
        .. ',"limit":' .. limit .. ',"ts":' .. ts .. '}')
      alarm_event('raise', model, name, raise, vs, limit, ts)
      st.events = st.events + 1
    end
  end
end

-- check_alarms runs the alarm check over the model points written by the
-- call, in the order of the model hashes. In table mode (lim.any), the
-- points whose ref is in an alarm hash are hits[1..nh]; else the refs are
-- looked up here.
local function check_alarms(st, fw, lim, hits, nh, mapped, dups, shuffled)
  if not lim or mapped == 0 then return end
  if lim.any then
    local th, tl, ta = lim.th, lim.tl, lim.ta
    if not (dups or shuffled) and not lim.al then
      -- Common case: the hits are in model order, once each, none active.
      -- A value within a valid high limit and without a low limit needs
      -- nothing more.
      local vals = fw.vals
      for k = 1, nh do
        local r = hits[k]
        local e = entry_of(fw, r)
        local hs, ls = th[e], tl[e]
        local high, v = hs and memo_numbers[hs], memo_numbers[vals[r]]
        if ls or not (high and v and v <= high) then
          check_point(st, fw, memo_entries[e], r, e, hs, ls, nil, nil)
        end
      end
      return
    end
  end
  -- Each hit: { entry record, point r, ref, limit, low limit, active entry }.
  local list, nl = {}, 0
  if lim.any then
    local th, tl, ta = lim.th, lim.tl, lim.ta
    for k = 1, nh do
      local r = hits[k]
      local e = entry_of(fw, r)
      nl = nl + 1
      list[nl] = { memo_entries[e], r, e, th[e], tl[e], ta[e] }
    end
  else
    -- The fields looked up are the mapped entries, in point order (a model
    -- point given twice is looked up twice).
    local fields, dr, n = {}, {}, 0
    for r = 1, fw.nref do
      local e = entry_of(fw, r)
      if e and memo_entries[e] then
        n = n + 1
        fields[n], dr[n] = e, r
      end
    end
    local highs, lows, actives = NONE, NONE, NONE
    if lim.hl then highs = hmget(KEY_ALARM_THRESHOLD, fields, n) end
    if lim.ll then lows = hmget(KEY_ALARM_LOW, fields, n) end
    if lim.al then actives = hmget(KEY_ALARM_ACTIVE, fields, n) end
    for i = 1, n do
      local hs, ls, as = highs[i], lows[i], actives[i]
      if hs or ls or as then
        local e = fields[i]
        nl = nl + 1
        list[nl] = { memo_entries[e], dr[i], e, hs, ls, as }
      end
    end
  end
  if nl == 0 then return end
  -- A model point given twice is checked once, with its last value.
  if dups then
    local by_rec, n = {}, 0
    for k = 1, nl do
      local h = list[k]
      local at = by_rec[h[1]]
      if at then
        list[at][2] = h[2]
      else
        n = n + 1
        list[n], by_rec[h[1]] = h, n
      end
    end
    for k = n + 1, nl do list[k] = nil end
    nl = n
  end
  if (dups or shuffled) and nl > 1 then sort(list, hit_before) end
  local hyst_refs, hyst_at, hysts = nil, nil, NONE
  for k = 1, nl do
    if list[k][6] then
      if not hyst_refs then hyst_refs, hyst_at = {}, {} end
      hyst_refs[#hyst_refs + 1] = list[k][3]
      hyst_at[k] = #hyst_refs
    end
  end
  if hyst_refs then
    hysts = hmget(KEY_ALARM_HYSTERESIS, hyst_refs, #hyst_refs)
  end
  for k = 1, nl do
    local h = list[k]
    local at = hyst_at and hyst_at[k]
    check_point(st, fw, h[1], h[2], h[3], h[4], h[5], h[6], at and hysts[at])
  end
end

-- forward maps the points of a forwarding job to model points, writes the
-- model hashes, publishes one update per model and runs the alarm check.
-- A model point given twice keeps its first position and its last value.
local function forward(st, fw)
  local args, vals, entries, mt, refs = fw.args, fw.vals, fw.entries, fw.mt, fw.refs
  local serial = call_serial
  local lim = read_limits(fw.nref)
  local any = lim and lim.any
  local hits, nh = {}, 0
  local order, nmodels, mapped = {}, 0, 0
  local dups, shuffled = false, false
  -- The current model record, its name count and buffers.
  local m, n, hv, ht, parts = nil, 0, nil, nil, nil
  for g = 1, fw.ngroups do
    local ts = fw.gts[g]
    if m then
      m.n = n
      m = nil
    end
    for r = fw.gfirst[g], fw.glast[g] do
      local e
      if mt then e = mt[refs[r]] else e = entries[r] end
      if e then
        local rec = memo_entries[e]
        if rec == nil then rec = new_entry(e) end
        if rec then
          if rec[1] ~= m then
            if m then m.n = n end
            m = rec[1]
            if m.stamp ~= serial then
              m.stamp, m.ts, n = serial, ts, 0
              nmodels = nmodels + 1
              order[nmodels], m.ord = m, nmodels
            else
              n = m.n
              if ts ~= m.ts and tonumber(ts) > tonumber(m.ts) then m.ts = ts end
              if order[nmodels] ~= m then shuffled = true end
            end
            hv, ht, parts = m.hv, m.ht, m.parts
          end
          local x2
          if rec[5] ~= serial then
            n = n + 1
            x2 = 2 * n
            rec[5], rec[6] = serial, x2
            -- The buffers are written together, so a name in place in hv
            -- (as in the previous call) is in place in ht and parts too.
            local name = rec[2]
            if hv[x2 - 1] ~= name then
              hv[x2 - 1] = name
              ht[x2 - 1] = name
              if n == 1 then parts[4] = rec[3] else parts[x2 + 2] = rec[4] end
            end
          else
            x2 = rec[6]
            dups = true
          end
          local value = vals[r]
          hv[x2] = value
          ht[x2] = ts
          parts[x2 + 3] = value
          mapped = mapped + 1
          if any and any[e] then
            nh = nh + 1
            hits[nh] = r
          end
        else
          local ch, point = fw.gch[g], args[arg_of(fw, g, r)]
          add_error(st, ch, ts, point_context(st, ch, point) .. ': mapping ' .. quote(ch .. ':' .. point)
            .. ' holds ' .. quote(e) .. ', want "{model}:{point_name}" with valid ids')
        end
      end
    end
  end
  if m then m.n = n end
  st.mapped = mapped
  for i = 1, nmodels do
    m = order[i]
    local n2 = 2 * m.n
    hv, parts = m.hv, m.parts
    call('HSET', m.kv, unpack(hv, 1, n2))
    call('HSET', m.kt, unpack(m.ht, 1, n2))
    parts[2] = m.ts
    hv[n2 + 1] = false -- '}}' takes the piece of the next name: that name is no longer in place
    parts[n2 + 4] = '}}'
    call('PUBLISH', m.ku, concat(parts, '', 1, n2 + 4))
  end
  check_alarms(st, fw, lim, hits, nh, mapped, dups, shuffled)
  for i = 1, nmodels do
    m = order[i]
    if m.n > BUFFER_KEEP then
      m.hv, m.ht, m.parts = {}, {}, { m.parts[1], '', m.parts[3] }
    end
  end
end

local function sync_measurement(_, args)
  local fn = 'sync_measurement'
  local nargs = #args
  if nargs < 3 or nargs > 4 then
    return fail(fn .. ': want <channel> <point> <value> [ts_ms], got ' .. nargs .. ' argument(s)')
  end
  local ch, point, value, ts = args[1], args[2], args[3], args[4]
  local ctx = fn .. ' channel=' .. show(ch) .. ' point=' .. show(point)
  local p = id_problem(ch)
  if p then return fail(ctx .. ': channel id ' .. p) end
  p = id_problem(point)
  if p then return fail(ctx .. ': point id ' .. p) end
  if not is_number(value) then return fail(ctx .. ': value ' .. quote(value) .. ' is not a number') end
  if ts == nil then
    ts = now_ms()
  elseif not is_ts(ts) then
    return fail(ctx .. ': ts_ms ' .. quote(ts) .. ' is not a Unix time in milliseconds')
  end

  call('HSET', key_channel_values(ch), point, value)
  call('HSET', key_channel_timestamps(ch), point, ts)
  local st = new_state(fn)
  forward(st, {
    args = { point, value }, vals = { value }, nref = 1, entries = { call('HGET', KEY_MAPPING, ch .. ':' .. point) },
    ngroups = 1, gch = { ch }, gts = { ts }, gfirst = { 1 }, glast = { 1 }, goff = { -1 },
  })
  flush_errors(st)
  if st.first then return fail(st.first) end
  return redis.status_reply('OK')
end

local function sync_batch(_, args)
  local fn = 'sync_batch'
  local nargs = #args
  if nargs == 0 then
    return fail(fn .. ': no groups, want <channel> <ts_ms> <n> <point> <value> ... [<channel> <ts_ms> <n> ...]')
  end
  -- Check the whole structure before writing anything.
  local starts, chans, counts = {}, {}, {}
  local ngroups = 0
  local i = 1
  while i <= nargs do
    local g = ngroups + 1
    if i + 2 > nargs then
      return fail(fn .. ' group ' .. g .. ' at argument ' .. i .. ': want <channel> <ts_ms> <n>, only '
        .. (nargs - i + 1) .. ' argument(s) left')
    end
    local ch, ts, ns = args[i], args[i + 1], args[i + 2]
    local c = memo_channels[ch] or channel_of(ch)
    if not c then
      return fail(fn .. ' group ' .. g .. ' argument ' .. i .. ': channel id ' .. quote(ch) .. ' ' .. id_problem(ch))
    end
    if not is_ts(ts) then
      return fail(fn .. ' group ' .. g .. ' channel=' .. ch .. ' argument ' .. (i + 1) .. ': ts_ms '
        .. quote(ts) .. ' is not a Unix time in milliseconds')
    end
    local n = memo_counts[ns]
    if not n then
      if #ns <= 4 and find(ns, '^%d+$') then n = tonumber(ns) end
      if n and n <= MAX_GROUP_POINTS then memo_counts[ns] = n end
    end
    if not n or n > MAX_GROUP_POINTS then
      return fail(fn .. ' group ' .. g .. ' channel=' .. ch .. ' argument ' .. (i + 2) .. ': n ' .. quote(ns)
        .. ' is not a point count from 0 to ' .. MAX_GROUP_POINTS)
    end
    if i + 2 + 2 * n > nargs then
      return fail(fn .. ' group ' .. g .. ' channel=' .. ch .. ' argument ' .. (i + 2) .. ': n=' .. n
        .. ' needs ' .. (2 * n) .. ' point/value arguments, only ' .. (nargs - i - 2) .. ' left')
    end
    ngroups = g
    starts[g], chans[g], counts[g] = i, c, n
    i = i + 3 + 2 * n
  end

  local st = new_state(fn)
  local written = 0
  -- Channel hashes per group; mapping references collected for one lookup.
  local tf, refs, vals, ra = buf_tf, buf_refs, buf_vals, buf_ra
  local nref = 0
  local gch, gts, gfirst, glast, goff = {}, {}, {}, {}, {}
  for g = 1, ngroups do
    local base, c = starts[g], chans[g]
    local ch, ts, last = c.id, args[base + 1], base + 1 + 2 * counts[g]
    local crefs = c.refs
    local first = nref + 1
    local t2 = 0 -- entries in tf
    local a = base + 3
    -- Fast path: points and values seen valid before.
    while a <= last do
      local point, value = args[a], args[a + 1]
      local ref = crefs[point]
      if not (ref and memo_numbers[value]) then break end
      t2 = t2 + 2
      tf[t2 - 1] = point
      tf[t2] = ts
      nref = nref + 1
      refs[nref], vals[nref] = ref, value
      a = a + 2
    end
    -- Full checks for the rest. Once a point is rejected, the pairs to
    -- store (mf) and the argument index of each point (ra) are listed.
    local mf = nil
    while a <= last do
      local point, value = args[a], args[a + 1]
      local ref = crefs[point]
      local bad = nil
      if not ref then
        local p = id_problem(point)
        if p then
          bad = fn .. ' channel=' .. ch .. ' point=' .. quote(point) .. ': point id ' .. p
        else
          ref = c.prefix .. point
          crefs[point] = ref
          memo_size = memo_size + 1
        end
      end
      if not bad and not number_of(value) then
        bad = fn .. ' channel=' .. ch .. ' point=' .. point .. ': value ' .. quote(value) .. ' is not a number'
      end
      if bad then
        add_error(st, ch, ts, bad)
        if not mf then
          mf = {}
          for q = 1, t2 do mf[q] = args[base + 2 + q] end
          for r = first, nref do ra[r] = base + 3 + 2 * (r - first) end
        end
      else
        t2 = t2 + 2
        tf[t2 - 1] = point
        tf[t2] = ts
        nref = nref + 1
        refs[nref], vals[nref] = ref, value
        if mf then
          mf[t2 - 1] = point
          mf[t2] = value
          ra[nref] = a
        end
      end
      a = a + 2
    end
    gch[g], gts[g], gfirst[g], glast[g] = ch, ts, first, nref
    goff[g] = not mf and base + 3 - 2 * first
    if t2 > 0 then
      if mf then
        call('HSET', c.m, unpack(mf, 1, t2))
      else
        call('HSET', c.m, unpack(args, base + 3, last + 1))
      end
      call('HSET', c.t, unpack(tf, 1, t2))
      written = written + t2 / 2
    end
  end
  if nref > 0 then
    local entries, mt = NONE, nil
    local mode = read_mode(KEY_MAPPING, nref)
    if mode then
      mt = read_whole(KEY_MAPPING)
    elseif mode == false then
      entries = hmget(KEY_MAPPING, refs, nref)
    end
    forward(st, {
      args = args, vals = vals, ra = ra, nref = nref, entries = entries, mt = mt, refs = refs,
      ngroups = ngroups, gch = gch, gts = gts, gfirst = gfirst, glast = glast, goff = goff,
    })
  end
  if nref > BUFFER_KEEP then
    buf_refs, buf_vals, buf_ra = {}, {}, {}
  end
  flush_errors(st)
  return { written, st.mapped, st.errors, st.events, st.first or '' }
end

local function send_control(_, args)
  local fn = 'send_control'
  local nargs = #args
  if nargs < 3 or nargs > 4 then
    return fail(fn .. ': want <model> <control> <value> [ttl_ms], got ' .. nargs .. ' argument(s)')
  end
  local model, control, value, ttl = args[1], args[2], args[3], args[4]
  local ctx = fn .. ' model=' .. show(model) .. ' control=' .. show(control)
  local p = id_problem(model)
  if p then return fail(ctx .. ': model id ' .. p) end
  p = id_problem(control)
  if p then return fail(ctx .. ': control name ' .. p) end
  if not is_number(value) then return fail(ctx .. ': value ' .. quote(value) .. ' is not a number') end
  if ttl == nil then
    ttl = DEFAULT_TTL_MS
  elseif #ttl > MAX_TTL_DIGITS or not find(ttl, '^[1-9]%d*$') then
    return fail(ctx .. ': ttl_ms ' .. quote(ttl) .. ' is not a positive number of milliseconds')
  end
  local ref = model .. ':' .. control
  local target = call('HGET', KEY_MAPPING_REVERSE, ref)
  if not target then
    return fail(ctx .. ': no ' .. KEY_MAPPING_REVERSE .. ' entry ' .. quote(ref))
  end
  local ch, point = split_ref(target)
  if not ch then
    return fail(ctx .. ': ' .. KEY_MAPPING_REVERSE .. ' entry ' .. quote(ref) .. ' holds ' .. quote(target)
      .. ', want "{channel}:{point}" with valid ids')
  end

  local id = call('INCR', KEY_COMMAND_SEQ)
  local ts = now_ms()
  local deadline = format('%d', tonumber(ts) + tonumber(ttl))
  call('HSET', key_command(ch), point, value)
  call('LPUSH', key_command_queue(ch), '{"id":' .. id .. ',"channel":' .. json_string(ch)
    .. ',"point":' .. json_string(point) .. ',"value":' .. value .. ',"model":' .. json_string(model)
    .. ',"control":' .. json_string(control) .. ',"ts":' .. ts .. ',"deadline":' .. deadline .. '}')
  call('LTRIM', key_command_queue(ch), '0', COMMAND_QUEUE_LAST)
  call('SADD', KEY_COMMAND_PENDING, ch)
  call('PUBLISH', key_command(ch), point .. ':' .. value)
  return id
end

local function voltedge_version()
  return VERSION
end

-- entry wraps a function so that the aliases are bound before it runs.
local function entry(fn)
  return function(keys, args)
    if not call then bind() end
    begin_call()
    return fn(keys, args)
  end
end

redis.register_function{ function_name = 'sync_measurement', callback = entry(sync_measurement) }
redis.register_function{ function_name = 'sync_batch', callback = entry(sync_batch) }
redis.register_function{ function_name = 'send_control', callback = entry(send_control) }
redis.register_function{ function_name = 'voltedge_version', callback = voltedge_version, flags = { 'no-writes' } }
