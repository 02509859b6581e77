#!lua name=voltedge
-- VoltEdge data library: Redis Functions (Redis 7.0 or later, standalone).
local VERSION = 3

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
    HMGET mapping "{channel}:{p1}" ...             (one command)
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
  The limits are read with one HMGET each on alarm:threshold, alarm:low and
  alarm:active (an empty hash is not read: HLEN first); alarm:hysteresis is
  read only for refs with an active alarm. Lookups go in chunks of 4000 fields.
  Raise: HSET alarm:active ref <json>
         XADD alarm:events MAXLEN ~ 10000 * type raise model M point P kind K value V limit L ts T
  Clear: HDEL alarm:active ref
         XADD alarm:events MAXLEN ~ 10000 * type clear model M point P kind K value V limit L ts T
         (L is the limit the alarm was raised with, V the value that cleared it)
  A non-numeric limit or hysteresis, or an unreadable alarm:active entry
  (which is then deleted), is a sync error; the other limit still applies.

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
local find, match, sub, byte, format, gsub, concat, floor, huge, json_encode, call, tonumber, unpack

local function bind()
  find, match, sub, byte = string.find, string.match, string.sub, string.byte
  format, gsub, concat = string.format, string.gsub, table.concat
  floor, huge = math.floor, math.huge
  json_encode, call = cjson.encode, redis.call
  tonumber, unpack = _G.tonumber, _G.unpack
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

-- Sync state of one call: error counts per channel and the model updates.
local function new_state(fn)
  return {
    fn = fn, errors = 0, first = nil, err_by_ch = {}, err_chs = {},
    models = {}, model_order = {}, mapped = 0, events = 0,
  }
end

local function add_error(st, ch, ts, msg)
  st.errors = st.errors + 1
  if not st.first then st.first = msg end
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

-- map_point records a channel point for forwarding, given its mapping entry
-- (false when unmapped). It reports whether the point was forwarded.
local function map_point(st, ch, point, value, ts, tsn, entry)
  if not entry then return false end
  local model, name = split_ref(entry)
  if not model then
    add_error(st, ch, ts, point_context(st, ch, point) .. ': mapping ' .. quote(ch .. ':' .. point)
      .. ' holds ' .. quote(entry) .. ', want "{model}:{point_name}" with valid ids')
    return false
  end
  local md = st.models[model]
  if not md then
    md = { names = {}, index = {}, values = {}, tss = {}, chs = {}, points = {}, refs = {}, ts = ts, tsn = tsn }
    st.models[model] = md
    st.model_order[#st.model_order + 1] = model
  elseif tsn > md.tsn then
    md.ts = ts
    md.tsn = tsn
  end
  local x = md.index[name]
  if not x then
    x = #md.names + 1
    md.index[name] = x
    md.names[x] = name
  end
  md.values[x] = value
  md.tss[x] = ts
  md.chs[x] = ch
  md.points[x] = point
  md.refs[x] = entry
  st.mapped = st.mapped + 1
  return true
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
local function limit_value(st, md, x, ref, hash, s)
  if not s then return nil end
  if is_number(s) then return tonumber(s) end
  add_error(st, md.chs[x], md.tss[x], point_context(st, md.chs[x], md.points[x]) .. ': ' .. hash
    .. ' ' .. quote(ref) .. ' holds ' .. quote(s) .. ', which is not a number')
  return false
end

-- NONE stands for an HMGET reply of nothing but nils.
local NONE = {}

-- hmget looks fields up in chunks, so that no call exceeds Lua's stack for unpack.
local UNPACK_CHUNK = 4000
local function hmget(key, fields)
  local n = #fields
  if n <= UNPACK_CHUNK then return call('HMGET', key, unpack(fields)) end
  local out = {}
  for first = 1, n, UNPACK_CHUNK do
    local last = first + UNPACK_CHUNK - 1
    if last > n then last = n end
    local part = call('HMGET', key, unpack(fields, first, last))
    for i = 1, #part do out[first + i - 1] = part[i] end
  end
  return out
end

-- hmget_if_any is hmget, or nil without a lookup when the hash is empty
-- (the common case for alarm:low and alarm:active).
local function hmget_if_any(key, fields)
  if call('HLEN', key) == 0 then return nil end
  return hmget(key, fields)
end

-- check_alarms runs the alarm check over the points forwarded in this call.
local function check_alarms(st, item_md, item_x, refs)
  local n = #refs
  if n == 0 then return end
  local highs = hmget_if_any(KEY_ALARM_THRESHOLD, refs)
  local lows = hmget_if_any(KEY_ALARM_LOW, refs)
  local actives = hmget_if_any(KEY_ALARM_ACTIVE, refs)
  if not (highs or lows or actives) then return end
  highs, lows, actives = highs or NONE, lows or NONE, actives or NONE
  local hyst_refs, hyst_at, hysts = nil, nil, nil
  for i = 1, n do
    if actives[i] then
      if not hyst_refs then
        hyst_refs, hyst_at = {}, {}
      end
      hyst_refs[#hyst_refs + 1] = refs[i]
      hyst_at[i] = #hyst_refs
    end
  end
  if hyst_refs then
    hysts = hmget(KEY_ALARM_HYSTERESIS, hyst_refs)
  end
  for i = 1, n do
    local hs, ls, as = highs[i], lows[i], actives[i]
    if hs or ls or as then
      local md, x, ref = item_md[i], item_x[i], refs[i]
      local model, name, vs, ts = md.model, md.names[x], md.values[x], md.tss[x]
      local v = tonumber(vs)
      local high = limit_value(st, md, x, ref, KEY_ALARM_THRESHOLD, hs)
      local low = limit_value(st, md, x, ref, KEY_ALARM_LOW, ls)
      local kind, active_limit = nil, nil
      if as then
        kind, active_limit = parse_active(as)
        if not kind then
          add_error(st, md.chs[x], ts, point_context(st, md.chs[x], md.points[x]) .. ': ' .. KEY_ALARM_ACTIVE
            .. ' ' .. quote(ref) .. ' holds ' .. quote(as) .. ', which is not an alarm; deleted')
          call('HDEL', KEY_ALARM_ACTIVE, ref)
        else
          local hyst = 0
          local h = hysts[hyst_at[i]]
          if h then
            if is_number(h) and tonumber(h) >= 0 then
              hyst = tonumber(h)
            else
              add_error(st, md.chs[x], ts, point_context(st, md.chs[x], md.points[x]) .. ': '
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
  end
end

-- flush_models writes the model hashes, publishes one update per model and
-- runs the alarm check.
local function flush_models(st)
  local item_md, item_x, refs = {}, {}, {}
  for m = 1, #st.model_order do
    local model = st.model_order[m]
    local md = st.models[model]
    md.model = model
    local hv, ht, parts = {}, {}, {}
    for x = 1, #md.names do
      local name, value = md.names[x], md.values[x]
      hv[2 * x - 1] = name
      hv[2 * x] = value
      ht[2 * x - 1] = name
      ht[2 * x] = md.tss[x]
      parts[x] = json_string(name) .. ':' .. value
      local i = #refs + 1
      refs[i] = md.refs[x]
      item_md[i] = md
      item_x[i] = x
    end
    call('HSET', key_model_values(model), unpack(hv))
    call('HSET', key_model_timestamps(model), unpack(ht))
    call('PUBLISH', key_model_updates(model), '{"model":' .. json_string(model) .. ',"ts":' .. md.ts
      .. ',"values":{' .. concat(parts, ',') .. '}}')
  end
  check_alarms(st, item_md, item_x, refs)
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
  if map_point(st, ch, point, value, ts, tonumber(ts), call('HGET', KEY_MAPPING, ch .. ':' .. point)) then
    flush_models(st)
  end
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
  local starts = {}
  local i = 1
  while i <= nargs do
    local g = #starts + 1
    if i + 2 > nargs then
      return fail(fn .. ' group ' .. g .. ' at argument ' .. i .. ': want <channel> <ts_ms> <n>, only '
        .. (nargs - i + 1) .. ' argument(s) left')
    end
    local ch, ts, ns = args[i], args[i + 1], args[i + 2]
    local p = id_problem(ch)
    if p then
      return fail(fn .. ' group ' .. g .. ' argument ' .. i .. ': channel id ' .. quote(ch) .. ' ' .. p)
    end
    if not is_ts(ts) then
      return fail(fn .. ' group ' .. g .. ' channel=' .. ch .. ' argument ' .. (i + 1) .. ': ts_ms '
        .. quote(ts) .. ' is not a Unix time in milliseconds')
    end
    local n = nil
    if #ns <= 4 and find(ns, '^%d+$') then n = tonumber(ns) end
    if not n or n > MAX_GROUP_POINTS then
      return fail(fn .. ' group ' .. g .. ' channel=' .. ch .. ' argument ' .. (i + 2) .. ': n ' .. quote(ns)
        .. ' is not a point count from 0 to ' .. MAX_GROUP_POINTS)
    end
    if i + 2 + 2 * n > nargs then
      return fail(fn .. ' group ' .. g .. ' channel=' .. ch .. ' argument ' .. (i + 2) .. ': n=' .. n
        .. ' needs ' .. (2 * n) .. ' point/value arguments, only ' .. (nargs - i - 2) .. ' left')
    end
    starts[g] = i
    i = i + 3 + 2 * n
  end

  local st = new_state(fn)
  local written = 0
  -- Channel hashes per group; mapping references collected for one lookup.
  local refs, rch, rpt, rval, rts, rtsn = {}, {}, {}, {}, {}, {}
  local nref = 0
  for g = 1, #starts do
    local base = starts[g]
    local ch, ts, n = args[base], args[base + 1], tonumber(args[base + 2])
    local mf, tf = {}, {}
    local k = 0
    local tsn = tonumber(ts)
    local prefix = ch .. ':'
    for j = 1, n do
      local point, value = args[base + 1 + 2 * j], args[base + 2 + 2 * j]
      local p = id_problem(point)
      if p then
        add_error(st, ch, ts, fn .. ' channel=' .. ch .. ' point=' .. quote(point) .. ': point id ' .. p)
      elseif not is_number(value) then
        add_error(st, ch, ts, fn .. ' channel=' .. ch .. ' point=' .. point .. ': value ' .. quote(value)
          .. ' is not a number')
      else
        k = k + 1
        mf[2 * k - 1] = point
        mf[2 * k] = value
        tf[2 * k - 1] = point
        tf[2 * k] = ts
        nref = nref + 1
        refs[nref] = prefix .. point
        rch[nref], rpt[nref], rval[nref], rts[nref], rtsn[nref] = ch, point, value, ts, tsn
      end
    end
    if k > 0 then
      call('HSET', key_channel_values(ch), unpack(mf))
      call('HSET', key_channel_timestamps(ch), unpack(tf))
      written = written + k
    end
  end
  if nref > 0 then
    local entries = hmget(KEY_MAPPING, refs)
    for r = 1, nref do
      map_point(st, rch[r], rpt[r], rval[r], rts[r], rtsn[r], entries[r])
    end
  end
  flush_models(st)
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
    return fn(keys, args)
  end
end

redis.register_function{ function_name = 'sync_measurement', callback = entry(sync_measurement) }
redis.register_function{ function_name = 'sync_batch', callback = entry(sync_batch) }
redis.register_function{ function_name = 'send_control', callback = entry(send_control) }
redis.register_function{ function_name = 'voltedge_version', callback = voltedge_version, flags = { 'no-writes' } }
