#!lua name=voltedge
-- VoltEdge data library: Redis Functions (Redis 7.0 or later, standalone).
local VERSION = 5

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
         XADD alarm:events MAXLEN ~ 10000 * type clear model M point P kind K value V limit L
              raised_limit R ts T
         (V is the value that cleared it, L the limit in force when it cleared,
         R the limit the alarm was raised with; L is R when the limit was deleted)
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

FCALL take_controls 0 <channel> <max>
  Takes up to max (1..100) queued commands of a channel, oldest first
  (send_control LPUSHes, so the oldest is at the tail), in one atomic step:
    RPOP cmd:{channel}:queue <max>
    SREM cmd:pending <channel>                (when the queue is then empty)
  Returns: array of the commands as send_control queued them (JSON strings),
           oldest first; an empty array when nothing is queued.
  Errors:  wrong argument count, invalid channel id, max not a count from 1
           to 100: error reply, nothing taken.

FCALL control_result 0 <id> <status> <code> <message> <channel> <point> <value> <model> <control> <ttl_ms> <maxlen>
  Records what became of command <id> (ts = the server clock):
    HSET cmd:result:{id} status S code C message M channel CH point P value V
                         model MO control CO ts T
    PEXPIRE cmd:result:{id} <ttl_ms>
    XADD cmd:results MAXLEN ~ <maxlen> * id ID status S code C message M
                         channel CH point P value V model MO control CO ts T
  id      the command number: 1..20 decimal digits
  status  ok, exception, timeout, offline, expired, invalid or failed
  code    0..255: the Modbus exception code for "exception", else 0
  message at most 512 bytes of any content ("" for none)
  channel an id; point, model, control: an id, or "" when not known
  value   a number (see Values), or "" when not known
  ttl_ms  1..999999999 (how long cmd:result:{id} is kept)
  maxlen  1..999999999 (the approximate cap of cmd:results)
  A second result for the same id replaces the hash and adds a stream entry.
  Returns: status "OK".
  Errors:  wrong argument count or an argument out of its range: error
           reply naming the argument, nothing written.

FCALL set_quality 0 <channel> <stale|good> <point> [<point> ...]
  Marks channel points stale (their slave or link is unreachable) or good:
    stale: HSET comsrv:{channel}:q p1 stale ...   good: HDEL comsrv:{channel}:q p1 ...
    HMGET mapping "{channel}:{p1}" ...            (one lookup for all points)
  Then per model with mapped points:
    HMGET modsrv:{model}:q name ...               (which of them change)
    stale: HSET modsrv:{model}:q name stale ...   good: HDEL modsrv:{model}:q name ...
    PUBLISH update:{model} <quality payload>      (only when some point changed)
  Unmapped points, and points whose mapping entry is malformed, change only
  the channel hash. Lookups go in chunks of 4000 fields.
  Quality payload, JSON, with the model's points whose quality changed:
    {"model":"power_meter","ts":1732212345678,"quality":{"voltage":"stale","current":"stale"}}
  ts is the server clock.
  Returns: the number of model points whose quality changed (integer).
  Errors:  fewer than 3 arguments, an invalid channel or point id (named by
           its argument position), a quality other than stale or good:
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
local KEY_COMMAND_RESULTS = 'cmd:results'

local function key_channel_values(ch) return 'comsrv:' .. ch .. ':m' end
local function key_channel_timestamps(ch) return 'comsrv:' .. ch .. ':t' end
local function key_channel_status(ch) return 'comsrv:' .. ch .. ':status' end
local function key_model_values(model) return 'modsrv:' .. model end
local function key_model_timestamps(model) return 'modsrv:' .. model .. ':t' end
local function key_model_updates(model) return 'update:' .. model end
local function key_command(ch) return 'cmd:' .. ch end
local function key_command_queue(ch) return 'cmd:' .. ch .. ':queue' end
local function key_command_result(id) return 'cmd:result:' .. id end
local function key_channel_quality(ch) return 'comsrv:' .. ch .. ':q' end
local function key_model_quality(model) return 'modsrv:' .. model .. ':q' end

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
local MAX_TAKE = 100           -- commands taken by one take_controls call
local MAX_ID_DIGITS = 20       -- digits in a command id
local MAX_MESSAGE = 512        -- bytes in an outcome message
local MAX_CODE = 255           -- largest exception code
local QUALITY_STALE = 'stale'

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

-- alarm_event appends a raise or a clear to alarm:events; a clear also
-- names the limit the alarm was raised with (raised_limit).
local function alarm_event(kind_of_event, model, name, kind, value, limit, ts, raised_limit)
  if raised_limit then
    call('XADD', KEY_ALARM_EVENTS, 'MAXLEN', '~', ALARM_EVENTS_MAXLEN, '*',
      'type', kind_of_event, 'model', model, 'point', name, 'kind', kind,
      'value', value, 'limit', limit, 'raised_limit', raised_limit, 'ts', ts)
    return
  end
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

-- hset_all sets each of fields to value, in chunks; it returns the number of fields added.
local function hset_all(key, fields, value)
  local n, added, step = #fields, 0, UNPACK_CHUNK / 2
  for first = 1, n, step do
    local last = first + step - 1
    if last > n then last = n end
    local fv, k = {}, 0
    for i = first, last do
      fv[k + 1] = fields[i]
      fv[k + 2] = value
      k = k + 2
    end
    added = added + call('HSET', key, unpack(fv))
  end
  return added
end

-- hdel_all deletes fields, in chunks; it returns the number of fields removed.
local function hdel_all(key, fields)
  local n, removed = #fields, 0
  for first = 1, n, UNPACK_CHUNK do
    local last = first + UNPACK_CHUNK - 1
    if last > n then last = n end
    removed = removed + call('HDEL', key, unpack(fields, first, last))
  end
  return removed
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
          local clear, in_force = false, nil
          if kind == 'high' then
            clear = high == nil or (high and v <= high - hyst)
            in_force = hs
          else
            clear = low == nil or (low and v >= low + hyst)
            in_force = ls
          end
          if clear then
            call('HDEL', KEY_ALARM_ACTIVE, ref)
            alarm_event('clear', model, name, kind, vs, in_force or active_limit, ts, active_limit)
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

-- is_count reports whether s is a positive integer of at most digits digits, without leading zeros.
local function is_count(s, digits)
  return #s <= digits and find(s, '^[1-9]%d*$') ~= nil
end

local function take_controls(_, args)
  local fn = 'take_controls'
  local nargs = #args
  if nargs ~= 2 then
    return fail(fn .. ': want <channel> <max>, got ' .. nargs .. ' argument(s)')
  end
  local ch, max = args[1], args[2]
  local ctx = fn .. ' channel=' .. show(ch)
  local p = id_problem(ch)
  if p then return fail(ctx .. ': channel id ' .. p) end
  if not is_count(max, 3) or tonumber(max) > MAX_TAKE then
    return fail(ctx .. ': max ' .. quote(max) .. ' is not a count from 1 to ' .. MAX_TAKE)
  end
  local queue = key_command_queue(ch)
  local taken = call('RPOP', queue, max)
  if call('LLEN', queue) == 0 then
    call('SREM', KEY_COMMAND_PENDING, ch)
  end
  return taken or {}
end

-- Outcomes control_result accepts (comsrv/control.Status).
local RESULT_STATUSES = {
  ok = true, exception = true, timeout = true, offline = true, expired = true, invalid = true, failed = true,
}
local RESULT_STATUS_LIST = 'ok, exception, timeout, offline, expired, invalid, failed'

local function control_result(_, args)
  local fn = 'control_result'
  local nargs = #args
  if nargs ~= 11 then
    return fail(fn .. ': want <id> <status> <code> <message> <channel> <point> <value> <model> <control>'
      .. ' <ttl_ms> <maxlen>, got ' .. nargs .. ' argument(s)')
  end
  local id, status, code, message, ch, point, value, model, control, ttl, maxlen = unpack(args, 1, 11)
  if #id == 0 or #id > MAX_ID_DIGITS or not find(id, '^%d+$') then
    return fail(fn .. ' id=' .. quote(id) .. ': id is not a command number (1 to ' .. MAX_ID_DIGITS .. ' digits)')
  end
  local ctx = fn .. ' id=' .. id
  if not RESULT_STATUSES[status] then
    return fail(ctx .. ': status ' .. quote(status) .. ' is not one of ' .. RESULT_STATUS_LIST)
  end
  ctx = ctx .. ' status=' .. status
  if not (code == '0' or (is_count(code, 3) and tonumber(code) <= MAX_CODE)) then
    return fail(ctx .. ': code ' .. quote(code) .. ' is not an exception code from 0 to ' .. MAX_CODE)
  end
  if #message > MAX_MESSAGE then
    return fail(ctx .. ': message of ' .. #message .. ' bytes ' .. quote(message) .. ' is longer than '
      .. MAX_MESSAGE .. ' bytes')
  end
  local p = id_problem(ch)
  if p then return fail(ctx .. ': channel id ' .. quote(ch) .. ' ' .. p) end
  local optional = { { 'point id', point }, { 'model id', model }, { 'control name', control } }
  for i = 1, #optional do
    local what, s = optional[i][1], optional[i][2]
    if s ~= '' then
      p = id_problem(s)
      if p then return fail(ctx .. ': ' .. what .. ' ' .. quote(s) .. ' ' .. p) end
    end
  end
  if value ~= '' and not is_number(value) then
    return fail(ctx .. ': value ' .. quote(value) .. ' is not a number')
  end
  if not is_count(ttl, MAX_TTL_DIGITS) then
    return fail(ctx .. ': ttl_ms ' .. quote(ttl) .. ' is not a positive number of milliseconds')
  end
  if not is_count(maxlen, MAX_TTL_DIGITS) then
    return fail(ctx .. ': maxlen ' .. quote(maxlen) .. ' is not a positive count')
  end

  local ts = now_ms()
  local key = key_command_result(id)
  call('HSET', key, 'status', status, 'code', code, 'message', message, 'channel', ch, 'point', point,
    'value', value, 'model', model, 'control', control, 'ts', ts)
  call('PEXPIRE', key, ttl)
  call('XADD', KEY_COMMAND_RESULTS, 'MAXLEN', '~', maxlen, '*', 'id', id, 'status', status, 'code', code,
    'message', message, 'channel', ch, 'point', point, 'value', value, 'model', model, 'control', control,
    'ts', ts)
  return redis.status_reply('OK')
end

local function set_quality(_, args)
  local fn = 'set_quality'
  local nargs = #args
  if nargs < 3 then
    return fail(fn .. ': want <channel> <stale|good> <point> [<point> ...], got ' .. nargs .. ' argument(s)')
  end
  local ch, quality = args[1], args[2]
  local p = id_problem(ch)
  if p then return fail(fn .. ' argument 1: channel id ' .. quote(ch) .. ' ' .. p) end
  local ctx = fn .. ' channel=' .. ch
  local stale = quality == QUALITY_STALE
  if not stale and quality ~= 'good' then
    return fail(ctx .. ' argument 2: quality ' .. quote(quality) .. ' is neither "stale" nor "good"')
  end
  local points, refs = {}, {}
  local prefix = ch .. ':'
  for i = 3, nargs do
    local point = args[i]
    p = id_problem(point)
    if p then return fail(ctx .. ' argument ' .. i .. ': point id ' .. quote(point) .. ' ' .. p) end
    points[i - 2] = point
    refs[i - 2] = prefix .. point
  end

  if stale then
    hset_all(key_channel_quality(ch), points, QUALITY_STALE)
  else
    hdel_all(key_channel_quality(ch), points)
  end

  -- Mapped points, grouped by model in the order first seen.
  local entries = hmget(KEY_MAPPING, refs)
  local models, order = {}, {}
  for k = 1, #points do
    local entry = entries[k]
    if entry then
      local model, name = split_ref(entry)
      if model then
        local md = models[model]
        if not md then
          md = { names = {}, seen = {} }
          models[model] = md
          order[#order + 1] = model
        end
        if not md.seen[name] then
          md.seen[name] = true
          md.names[#md.names + 1] = name
        end
      end
    end
  end

  local changed, ts = 0, nil
  local qjson = '"' .. quality .. '"'
  for m = 1, #order do
    local model = order[m]
    local names = models[model].names
    local key = key_model_quality(model)
    local current = hmget(key, names)
    local diff = {}
    for x = 1, #names do
      local c = current[x]
      if (stale and c ~= QUALITY_STALE) or (not stale and c) then
        diff[#diff + 1] = names[x]
      end
    end
    if #diff > 0 then
      if stale then
        hset_all(key, diff, QUALITY_STALE)
      else
        hdel_all(key, diff)
      end
      changed = changed + #diff
      if not ts then ts = now_ms() end
      local parts = {}
      for x = 1, #diff do parts[x] = json_string(diff[x]) .. ':' .. qjson end
      call('PUBLISH', key_model_updates(model), '{"model":' .. json_string(model) .. ',"ts":' .. ts
        .. ',"quality":{' .. concat(parts, ',') .. '}}')
    end
  end
  return changed
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
redis.register_function{ function_name = 'take_controls', callback = entry(take_controls) }
redis.register_function{ function_name = 'control_result', callback = entry(control_result) }
redis.register_function{ function_name = 'set_quality', callback = entry(set_quality) }
redis.register_function{ function_name = 'voltedge_version', callback = voltedge_version, flags = { 'no-writes' } }
