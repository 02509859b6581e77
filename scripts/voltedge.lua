#!lua name=voltedge
-- VoltEdge data library: Redis Functions (Redis 7.0 or later, standalone).
local VERSION = 9

--[[
Load:   redis-cli -x FUNCTION LOAD REPLACE < scripts/voltedge.lua   (or: edgectl lua load)
        Services load it themselves at start and after a Redis restart.
Keys:   every function declares 0 keys and names its keys itself; the names
        below must match internal/keys.
Ids:    channel ids, point ids, model ids and point names are 1..128 bytes
        with no ':', no '/', no space or control byte and no glob character
        (* ? [ ]), and none of the reserved names (RESERVED below, =
        internal/keys.Reserved): channels devices events inflight pending
        reload restore results sent seq stats templates. Each is the
        part of a fixed key after the prefix of a key family built from an id
        (cmd:pending, comsrv:stats, ...), so that no id builds a fixed key.
        Ids in mapping and mapping:reverse entries obey the same rule.
Values: strict decimal numbers in JSON number syntax: optional '-', an
        integer part without leading zeros, an optional fraction and an
        optional exponent ("220.5", "-3", "0", "1e-3"; not "", "abc", "nan",
        "inf", "0x10", " 5", "+5", ".5", "05"), at most 64 bytes, finite.
        The value string is stored and published exactly as given.
Times:  Unix milliseconds, decimal digits without leading zeros (at most 15).
Errors: error replies start with "ERR <function>" and name the ids, the
        argument (by position, 1 = first after numkeys) or the hash field,
        the offending content and what was expected:
          ERR take_controls channel=1001: max "0" is not a count from 1 to 100 (argument 2)
          ERR set_quality channel=1001 argument 2: quality "x" is neither "stale" nor "good"
        A bad point id or value of a sample is named by channel and point,
        as in the sync errors below (see sync_measurement).

FCALL sync_measurement 0 <channel> <point> <value> [ts_ms]
  Stores one sample. ts_ms defaults to the server clock (TIME).
    HSET comsrv:{channel}:m <point> <value>
    HSET comsrv:{channel}:t <point> <ts>
    HGET mapping "{channel}:{point}"  -> "{model}:{point_name}" (split at the first ':')
  If mapped, as sync_batch does (see Model points there):
    HMGET modsrv:{model}:t <point_name>   (a sample older than the stored time stops here)
    HSET modsrv:{model} <point_name> <value>
    HSET modsrv:{model}:t <point_name> <ts>
    PUBLISH update:{model} <update payload>
    alarm check (see below)
  Returns: status "OK".
  Errors:  wrong argument count, invalid id, non-numeric value or bad ts_ms:
           error reply, nothing written. A channel hash that is not a hash
           (WRONGTYPE): error reply naming the key, nothing forwarded.
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
  Then per model touched by the call (values of all groups merged):
    HMGET modsrv:{model}:t name ...                (the stored times)
    HSET modsrv:{model} name value ...             (one command)
    HSET modsrv:{model}:t name ts ...              (one command)
    PUBLISH update:{model} <update payload>        (at most one per model per call; ts = the largest ts written)
  Then one alarm check over all mapped points of the call.
  Every multi-field command goes in chunks of 500 fields, so a call may
  carry any number of points of one model (Lua cannot unpack more than
  about 8000 values onto its stack).
  Model points: a model point given more than once in a call (a channel
  point given twice, or several channel points mapped to it) is written
  with its newest sample, by ts; of samples with the same ts the later in
  the call wins. Across calls, a sample older than the time stored in
  modsrv:{model}:t is late: it stays in comsrv:{channel}:m/t but changes
  nothing of the model (not written, not published, not alarm-checked);
  a sample of the same time as the stored one is written. A model with
  only late samples in a call is not published. Every sample that is not
  late is alarm-checked, oldest first: an above-limit value followed by an
  in-limit one in the same call raises the alarm and then clears it (two
  events, each with its sample's value and ts).
  A bad point never aborts the call: a point with an invalid id or a
  non-numeric value is skipped and written nowhere; a point whose mapping
  entry is malformed keeps its raw value in comsrv:{channel}:m/t and is
  not forwarded; a non-numeric alarm limit skips that limit. Each is
  counted as a sync error.
  A key of the wrong type never aborts the call either (redis.pcall):
  comsrv:{channel}:m or :t costs that group's points; modsrv:{model} or
  modsrv:{model}:t costs that model's points (nothing of the model is
  written); an alarm hash costs the alarm check (alarm:threshold, alarm:low,
  alarm:active, alarm:hysteresis) or the alarm (alarm:active, alarm:events
  writes); mapping costs the forwarding of the call. Each lost point is a
  sync error whose message names the command, the key and Redis's error:
    sync_batch channel=1 point=7: model m not written: HSET modsrv:m: WRONGTYPE ...
  Other groups, models and the channel hashes are written.
  At most 1000 points per group.
  Returns: array {points_written, points_mapped, errors, alarm_events, first_error_message}
           (points_written: samples stored in the channel hashes;
           points_mapped: samples with a valid mapping entry, late ones
           included, those of a model that could not be written not;
           first_error_message is "" when errors is 0).
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
  alarm:active (alarm:low and alarm:active, usually empty, are read only
  when HLEN finds entries; alarm:threshold is read at once); alarm:hysteresis is
  read only for refs with an active alarm or several samples in the call.
  Lookups go in chunks of 500 fields.
  A point with several samples in a call is checked once per sample, oldest
  first, each check seeing the alarm state the one before left.
  Raise: HSET alarm:active ref <json>
         XADD alarm:events MAXLEN ~ 10000 * type raise model M point P kind K value V limit L ts T
  Clear: HDEL alarm:active ref
         XADD alarm:events MAXLEN ~ 10000 * type clear model M point P kind K value V limit L
              raised_limit R ts T
         (V is the value that cleared it, L the limit in force when it cleared,
         R the limit the alarm was raised with; L is R when the limit was deleted)
  A non-numeric limit or hysteresis, or an unreadable alarm:active entry
  (which is then deleted), is a sync error; the other limit still applies.

FCALL send_control 0 <model> <control> <value> [ttl_ms] [nonce]   (nonce after ttl_ms)
    HGET mapping:reverse "{model}:{control}" -> "{channel}:{point}"
    id = max(ts * 1000, GET cmd:seq + 1); SET cmd:seq id
         (time-ordered: 1732212345678000, 1732212345678001, ...; not handed
         out again after a restart that lost cmd:seq, unless the clock went back)
    HSET cmd:{channel} <point> <value>
    LPUSH cmd:{channel}:queue {"id":id,"channel":"..","point":"..","value":<number>,
                               "model":"..","control":"..","ts":ms,"deadline":ms[,"nonce":".."]}
    LTRIM cmd:{channel}:queue 0 999       (the oldest commands beyond 1000 are dropped)
    SADD cmd:pending <channel>
    PUBLISH cmd:{channel} "<point>:<value>"
  ttl_ms defaults to 30000; deadline = ts + ttl_ms (ts is the server clock).
  nonce   1..32 letters, digits, '_' or '-': the sender's mark, recorded with
          the outcome so that a waiter can tell its command's outcome.
  Returns: the command id (integer).
  Errors:  bad arguments, missing or malformed mapping:reverse entry:
           error reply, nothing written.

FCALL take_controls 0 <channel> <max>
  Takes up to max (1..100) queued commands of a channel, oldest first
  (send_control LPUSHes, so the oldest is at the tail), in one atomic step:
    RPOP cmd:{channel}:queue <max>
    SREM cmd:pending <channel>                (when the queue is then empty)
    HSET cmd:inflight id1 <command1> ...      (until control_result answers them;
                                               entries without a leading "id" are not kept)
  Returns: array of the commands as send_control queued them (JSON strings),
           oldest first; an empty array when nothing is queued.
  Errors:  wrong argument count, invalid channel id, max not a count from 1
           to 100: error reply, nothing taken.

FCALL control_sent 0 <id>
  Marks a command comsrv is about to write to its device (it may then have
  been executed even if comsrv dies before recording the outcome):
    HSET cmd:sent <id> <ts>                   (only when cmd:inflight holds <id>)
  Returns: 1, or 0 when the command is not in flight.
  Errors:  wrong argument count, id not a command number.

FCALL control_result 0 <id> <status> <code> <message> <channel> <point> <value> <model> <control> <ttl_ms> <maxlen>
                        [nonce]
  Records what became of command <id> (ts = the server clock):
    DEL, HSET cmd:result:{id} status S code C message M channel CH point P value V
                         model MO control CO ts T [nonce N]
    PEXPIRE cmd:result:{id} <ttl_ms>
    XADD cmd:results MAXLEN ~ <maxlen> * id ID status S code C message M
                         channel CH point P value V model MO control CO ts T [nonce N]
    HDEL cmd:inflight <id>; HDEL cmd:sent <id>
    HSET control:last <model>:<control> (or <channel>:<point> when the command
                         had no model and control; nothing when neither is known)
                         {"id":"ID","status":S,"code":C,"message":M,"value":V,"ts":T}
                         (JSON: id and value as strings, value "" when not known;
                         code and ts as numbers)
  id      the command number: 1..20 decimal digits
  status  ok, exception, timeout, offline, expired, invalid, failed or unknown
  code    0..255: the Modbus exception code for "exception", else 0
  message at most 512 bytes of any content ("" for none)
  channel an id; point, model, control: an id, or "" when not known
  value   a number (see Values), or "" when not known
  ttl_ms  1..999999999 (how long cmd:result:{id} is kept)
  maxlen  1..999999999 (the approximate cap of cmd:results)
  nonce   the command's nonce (see send_control), when it had one
  A second result for the same id replaces the hash and adds a stream entry.
  Returns: status "OK".
  Errors:  wrong argument count or an argument out of its range: error
           reply naming the argument, nothing written.

FCALL recover_controls 0 <ttl_ms> <maxlen>
  What comsrv calls at start, before it takes a command: answers every
  command a previous comsrv left in cmd:inflight (ttl_ms, maxlen as for
  control_result):
    marked in cmd:sent               -> outcome unknown
                                        "comsrv restarted while it was in flight"
    else past its deadline           -> outcome expired
    else                             -> RPUSH back to cmd:{channel}:queue (oldest
                                        at the tail, before anything newer), SADD cmd:pending
    outcome already recorded, or no valid channel -> dropped
    DEL cmd:inflight cmd:sent
  Returns: array {requeued, expired, unknown, dropped}.
  Errors:  wrong argument count, ttl_ms or maxlen out of range.

FCALL set_quality 0 <channel> <stale|good> <point> [<point> ...]
  Marks channel points stale (their slave or link is unreachable) or good:
    stale: HSET comsrv:{channel}:q p1 stale ...   good: HDEL comsrv:{channel}:q p1 ...
    HMGET mapping "{channel}:{p1}" ...            (one lookup for all points)
  Then per model with mapped points:
    HMGET modsrv:{model}:q name ...               (which of them change)
    stale: HSET modsrv:{model}:q name stale ...   good: HDEL modsrv:{model}:q name ...
    PUBLISH update:{model} <quality payload>      (only when some point changed)
  Unmapped points, and points whose mapping entry is malformed, change only
  the channel hash. Lookups go in chunks of 500 fields.
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
local find, match, sub, byte, format, gsub, concat, floor, huge, json_encode, call, rpcall, tonumber, unpack, type_of

local function bind()
  find, match, sub, byte = string.find, string.match, string.sub, string.byte
  format, gsub, concat = string.format, string.gsub, table.concat
  floor, huge = math.floor, math.huge
  json_encode, call, rpcall = cjson.encode, redis.call, redis.pcall
  tonumber, unpack, type_of = _G.tonumber, _G.unpack, _G.type
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
local KEY_COMMAND_INFLIGHT = 'cmd:inflight'
local KEY_COMMAND_SENT = 'cmd:sent'
local KEY_CONTROL_LAST = 'control:last'

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
local IDS_PER_MS = 1000        -- command ids per millisecond before they borrow from the next
local MAX_NONCE = 32           -- bytes in a command nonce
local MSG_RESTARTED = 'comsrv restarted while it was in flight'
local MSG_EXPIRED = 'deadline passed before the command could be sent (comsrv restarted)'
local QUALITY_STALE = 'stale'

-- Bytes an id must not contain: NUL, control bytes and space, ':', DEL, glob characters.
local BAD_ID_BYTES = '[%z\1- /:\127%*%?%[%]]'

-- Names that are not ids, because an id of that name would build a fixed key
-- (a channel "pending" makes cmd:{channel} the set cmd:pending). Keep equal
-- to internal/keys.Reserved, which derives them from the key table (a Go
-- test compares the two lists).
local RESERVED = {
  'channels', 'devices', 'events', 'inflight', 'pending', 'reload', 'restore', 'results', 'sent', 'seq', 'stats',
  'templates',
}
local IS_RESERVED, RESERVED_WHY = {}, 'is a reserved name (part of a fixed key; reserved:'
for i = 1, #RESERVED do
  IS_RESERVED[RESERVED[i]] = true
  RESERVED_WHY = RESERVED_WHY .. ' ' .. RESERVED[i]
end
RESERVED_WHY = RESERVED_WHY .. ')'

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
    return "contains ':', '/', a space, a control byte or a glob character"
  end
  if IS_RESERVED[s] then return RESERVED_WHY end
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

-- is_count reports whether s is a positive integer of at most digits digits, without leading zeros.
local function is_count(s, digits)
  return #s <= digits and find(s, '^[1-9]%d*$') ~= nil
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
-- (so the reference holds exactly one ':'). It returns nil and the reason
-- for a reference that is not one.
local function split_ref(ref)
  local i = find(ref, ':', 1, true)
  if not i or i == 1 or i == #ref or i > MAX_ID + 1 or #ref - i > MAX_ID then return nil end
  local owner, name = sub(ref, 1, i - 1), sub(ref, i + 1)
  if find(owner, BAD_ID_BYTES) or find(name, BAD_ID_BYTES) then return nil end
  if IS_RESERVED[owner] then return nil, quote(owner) .. ' ' .. RESERVED_WHY end
  if IS_RESERVED[name] then return nil, quote(name) .. ' ' .. RESERVED_WHY end
  return owner, name
end

--[[ Argument checking, shared by every function.

A call has a context c = { fn = name, ids = "...", inline = bool } (new_call):
ids grows with the ids checked so far (" channel=1001"). A check returns
nil for a good argument, else the message of the error reply, so that
checks chain with "or". The message names the function, the ids, the
argument's position and name, what it holds and what was expected:
  inline: "<fn><ids> argument <i>: <name> <content> <expected>"
  else:   "<fn><ids>: <name> <content> <expected> (argument <i>)"
(the content is left out when ids already show it).
]]

local function arg_message(c, i, what, s, why)
  if s then what = what .. ' ' .. quote(s) end
  if c.inline then
    return c.fn .. c.ids .. ' argument ' .. i .. ': ' .. what .. ' ' .. why
  end
  return c.fn .. c.ids .. ': ' .. what .. ' ' .. why .. ' (argument ' .. i .. ')'
end

-- check returns the error of argument i (named what, holding s) when
-- rule(s) returns a reason, else nil; shown says that ids already show s.
local function check(c, i, what, s, rule, shown)
  local why = rule(s)
  if not why then return nil end
  if shown then s = nil end
  return arg_message(c, i, what, s, why)
end

-- Usage of each function, as named in arity errors.
local USAGE = {
  sync_measurement = '<channel> <point> <value> [ts_ms]',
  sync_batch = '<channel> <ts_ms> <n> <point> <value> ... [<channel> <ts_ms> <n> ...]',
  send_control = '<model> <control> <value> [ttl_ms [nonce]]',
  take_controls = '<channel> <max>',
  control_result = '<id> <status> <code> <message> <channel> <point> <value> <model> <control> <ttl_ms> <maxlen>'
    .. ' [nonce]',
  control_sent = '<id>',
  recover_controls = '<ttl_ms> <maxlen>',
  set_quality = '<channel> <stale|good> <point> [<point> ...]',
}

-- new_call returns the context of a call of fn and the error of a call with
-- fewer than min or more than max arguments (max nil: no limit), else nil.
-- The ids show the first arguments under the names in shown (may be nil).
local function new_call(fn, args, min, max, shown)
  local c = { fn = fn, ids = '' }
  local n = #args
  if n < min or (max and n > max) then
    return c, fn .. ': want ' .. USAGE[fn] .. ', got ' .. n .. ' argument(s)'
  end
  for i = 1, shown and #shown or 0 do
    c.ids = c.ids .. ' ' .. shown[i] .. '=' .. show(args[i])
  end
  return c, nil
end

-- Rules: nil for a valid argument, else the reason it is not.
local function number_rule(s)
  if not is_number(s) then return 'is not a number' end
end

local function ts_rule(s)
  if not is_ts(s) then return 'is not a Unix time in milliseconds' end
end

local function ttl_rule(s)
  if not is_count(s, MAX_TTL_DIGITS) then return 'is not a positive number of milliseconds' end
end

local function maxlen_rule(s)
  if not is_count(s, MAX_TTL_DIGITS) then return 'is not a positive count' end
end

local function take_rule(s)
  if not is_count(s, 3) or tonumber(s) > MAX_TAKE then return 'is not a count from 1 to ' .. MAX_TAKE end
end

local function group_size_rule(s)
  if not (#s <= 4 and find(s, '^%d+$') and tonumber(s) <= MAX_GROUP_POINTS) then
    return 'is not a point count from 0 to ' .. MAX_GROUP_POINTS
  end
end

local function command_id_rule(s)
  if #s == 0 or #s > MAX_ID_DIGITS or not find(s, '^%d+$') then
    return 'is not a command number (1 to ' .. MAX_ID_DIGITS .. ' digits)'
  end
end

local function code_rule(s)
  if not (s == '0' or (is_count(s, 3) and tonumber(s) <= MAX_CODE)) then
    return 'is not an exception code from 0 to ' .. MAX_CODE
  end
end

local function nonce_rule(s)
  if #s == 0 or #s > MAX_NONCE or find(s, '[^%w_%-]') then
    return 'is not a nonce (1 to ' .. MAX_NONCE .. ' letters, digits, "_" or "-")'
  end
end

local function message_rule(s)
  if #s > MAX_MESSAGE then return 'is longer than ' .. MAX_MESSAGE .. ' bytes' end
end

-- optional accepts "" (not known) besides what rule accepts.
local function optional(rule)
  return function(s)
    if s ~= '' then return rule(s) end
  end
end
local optional_id, optional_number = optional(id_problem), optional(number_rule)

-- sample_problem returns nil for a storable sample, else the message naming
-- it; both sync functions use it (a sample error in sync_batch is a sync
-- error, in sync_measurement an error reply).
local function sample_problem(fn, ch, point, value)
  local p = id_problem(point)
  if p then return fn .. ' channel=' .. ch .. ' point=' .. quote(point) .. ': point id ' .. p end
  if not is_number(value) then
    return fn .. ' channel=' .. ch .. ' point=' .. point .. ': value ' .. quote(value) .. ' is not a number'
  end
  return nil
end

--[[ Sync state of one call: error counts per channel and the model updates.

A sample is a record { ch, point, value, ts, tsn } (tsn: ts as a number).
A mapped sample also gets { ref, name, md } (md: its model's record) and
becomes a point of its model; a model record is
{ model, points = {newest sample per name}, index = {name -> position},
  all = nil or {position -> every sample of that name, in call order} }
(all is made only when a name gets a second sample in the call).
]]
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

-- sample_error counts an error about a sample, named by channel and point.
local function sample_error(st, s, what)
  add_error(st, s.ch, s.ts, st.fn .. ' channel=' .. s.ch .. ' point=' .. s.point .. ': ' .. what)
end

-- redis_error returns the error text of a redis.pcall reply, or nil when it is not an error.
local function redis_error(r)
  if type_of(r) == 'table' and r.err then return r.err end
  return nil
end

local function flush_errors(st)
  for i = 1, #st.err_chs do
    local ch = st.err_chs[i]
    local e = st.err_by_ch[ch]
    local key = key_channel_status(ch)
    local err = redis_error(rpcall('HINCRBY', key, 'sync_errors', e.n))
      or redis_error(rpcall('HSET', key, 'last_sync_error', e.msg, 'last_sync_error_at', e.ts))
    if err then -- counted in the reply only: there is nowhere else to put it
      st.errors = st.errors + 1
      if not st.first then st.first = st.fn .. ' channel=' .. ch .. ': ' .. key .. ': ' .. err end
    end
  end
end

-- map_point records a sample for forwarding, given its mapping entry (false
-- when unmapped). It reports whether the sample was forwarded. Of several
-- samples of one model point, the newest (by ts; on a tie the later in the
-- call) is the one written; all are kept for the alarm check.
local function map_point(st, s, entry)
  if not entry then return false end
  local model, name = split_ref(entry)
  if not model then
    sample_error(st, s, 'mapping ' .. quote(s.ch .. ':' .. s.point) .. ' holds ' .. quote(entry)
      .. ', want "{model}:{point_name}" with valid ids' .. (name and ': ' .. name or ''))
    return false
  end
  local md = st.models[model]
  if not md then
    md = { model = model, points = {}, index = {} }
    st.models[model] = md
    st.model_order[#st.model_order + 1] = model
  end
  s.ref, s.name, s.md = entry, name, md
  local pts = md.points
  local x = md.index[name]
  if not x then
    x = #pts + 1
    md.index[name] = x
    pts[x] = s
  else
    local all = md.all
    if not all then
      all = {}
      md.all = all
    end
    local list = all[x]
    if not list then
      list = { pts[x] }
      all[x] = list
    end
    list[#list + 1] = s
    if s.tsn >= pts[x].tsn then pts[x] = s end
  end
  st.mapped = st.mapped + 1
  return true
end

-- NONE stands for an HMGET reply of nothing but nils.
local NONE = {}

-- Fields per HSET, HMGET or HDEL: Lua's unpack cannot spread an unbounded
-- table onto the stack ("too many results to unpack" near 8000 values), so
-- every multi-field command goes in chunks.
local CHUNK_FIELDS = 500

-- chunks calls each(first, last) over 1..n in chunks of size step and
-- returns the sum of its results.
local function chunks(n, step, each)
  local sum = 0
  for first = 1, n, step do
    local last = first + step - 1
    if last > n then last = n end
    sum = sum + each(first, last)
  end
  return sum
end

-- hmget looks fields up, in chunks: it returns the values, or nil and the
-- error (e.g. WRONGTYPE when key is not a hash).
local function hmget(key, fields)
  local n = #fields
  if n <= CHUNK_FIELDS then
    local r = rpcall('HMGET', key, unpack(fields))
    local err = redis_error(r)
    if err then return nil, err end
    return r
  end
  local out = {}
  for first = 1, n, CHUNK_FIELDS do
    local last = first + CHUNK_FIELDS - 1
    if last > n then last = n end
    local part = rpcall('HMGET', key, unpack(fields, first, last))
    local err = redis_error(part)
    if err then return nil, err end
    for i = 1, #part do out[first + i - 1] = part[i] end
  end
  return out
end

-- must returns v, or raises err as the error reply (for calls that abort on it).
local function must(v, err)
  if v == nil then error({ err = err }) end
  return v
end

-- hset_pairs writes the field/value pairs fv (f1, v1, f2, v2, ...) to key,
-- in chunks; it returns nil, or the error of the first chunk that failed.
local function hset_pairs(key, fv)
  local n = #fv
  local step = 2 * CHUNK_FIELDS
  for first = 1, n, step do
    local last = first + step - 1
    if last > n then last = n end
    local err = redis_error(rpcall('HSET', key, unpack(fv, first, last)))
    if err then return err end
  end
  return nil
end

-- hset_all sets each of fields to value, in chunks; it returns the number of fields added.
local function hset_all(key, fields, value)
  return chunks(#fields, CHUNK_FIELDS, function(first, last)
    local fv, k = {}, 0
    for i = first, last do
      fv[k + 1] = fields[i]
      fv[k + 2] = value
      k = k + 2
    end
    return call('HSET', key, unpack(fv))
  end)
end

-- hdel_all deletes fields, in chunks; it returns the number of fields removed.
local function hdel_all(key, fields)
  return chunks(#fields, CHUNK_FIELDS, function(first, last)
    return call('HDEL', key, unpack(fields, first, last))
  end)
end

-- write_channel writes a channel's values and times (field/value pairs);
-- it returns nil, or the failed command and its error.
local function write_channel(ch, mf, tf)
  local key = key_channel_values(ch)
  local err = hset_pairs(key, mf)
  if not err then
    key = key_channel_timestamps(ch)
    err = hset_pairs(key, tf)
  end
  if err then return 'HSET ' .. key .. ': ' .. err end
  return nil
end

--[[ Alarms. Each forwarded point p (a mapped sample) is checked with its
high limit, low limit, active alarm and hysteresis as stored (strings, or
false/nil when absent). A point given several times in a call is checked
once per sample, oldest first, each check seeing the alarm the one before
left (series).
]]

-- alarm_call runs a write of the alarm check for p; a failure (a wrong-typed
-- alarm key) is counted as a sync error. It reports whether it succeeded.
local function alarm_call(st, p, cmd, key, ...)
  local err = redis_error(rpcall(cmd, key, ...))
  if err then
    sample_error(st, p, 'alarm not recorded: ' .. cmd .. ' ' .. key .. ': ' .. err)
    return false
  end
  return true
end

-- alarm_event appends a raise or a clear to alarm:events; a clear also
-- names the limit the alarm was raised with (raised_limit).
local function alarm_event(st, type_of_event, p, kind, limit, raised_limit)
  local ok
  if raised_limit then
    ok = alarm_call(st, p, 'XADD', KEY_ALARM_EVENTS, 'MAXLEN', '~', ALARM_EVENTS_MAXLEN, '*',
      'type', type_of_event, 'model', p.md.model, 'point', p.name, 'kind', kind,
      'value', p.value, 'limit', limit, 'raised_limit', raised_limit, 'ts', p.ts)
  else
    ok = alarm_call(st, p, 'XADD', KEY_ALARM_EVENTS, 'MAXLEN', '~', ALARM_EVENTS_MAXLEN, '*',
      'type', type_of_event, 'model', p.md.model, 'point', p.name, 'kind', kind,
      'value', p.value, 'limit', limit, 'ts', p.ts)
  end
  if ok then st.events = st.events + 1 end
end

-- alarm_hash_error counts an alarm hash entry of p that cannot be used.
local function alarm_hash_error(st, p, hash, s, why)
  sample_error(st, p, hash .. ' ' .. quote(p.ref) .. ' holds ' .. quote(s) .. ', ' .. why)
end

-- limit_number returns the number in a limit entry, nil when absent, or
-- false (after counting the error) when it is not a number.
local function limit_number(st, p, hash, s)
  if not s then return nil end
  if is_number(s) then return tonumber(s) end
  alarm_hash_error(st, p, hash, s, 'which is not a number')
  return false
end

-- hysteresis_number returns the hysteresis entry as a number >= 0 (0 when
-- absent, or after counting the error when invalid).
local function hysteresis_number(st, p, s)
  if not s then return 0 end
  if is_number(s) and tonumber(s) >= 0 then return tonumber(s) end
  alarm_hash_error(st, p, KEY_ALARM_HYSTERESIS, s, 'which is not a number >= 0; using 0')
  return 0
end

-- active_alarm reads p's alarm:active entry, written by this library: it
-- returns its kind and the limit it was raised with, or nil (after counting
-- the error and deleting the entry) when it is not an alarm.
local function active_alarm(st, p, s)
  local kind = match(s, '"kind"%s*:%s*"(%a+)"')
  local limit = match(s, '"limit"%s*:%s*([^,}%s]+)')
  if (kind == 'high' or kind == 'low') and limit and is_number(limit) then
    return kind, limit
  end
  alarm_hash_error(st, p, KEY_ALARM_ACTIVE, s, 'which is not an alarm; deleted')
  alarm_call(st, p, 'HDEL', KEY_ALARM_ACTIVE, p.ref)
  return nil
end

-- clears reports whether an active alarm of kind clears at value v; limit is
-- the number in force (nil: deleted, false: unreadable, which keeps it).
local function clears(kind, v, limit, hyst)
  if limit == nil then return true end
  if not limit then return false end
  if kind == 'high' then return v <= limit - hyst end
  return v >= limit + hyst
end

local function clear_alarm(st, p, kind, in_force, raised_limit)
  if alarm_call(st, p, 'HDEL', KEY_ALARM_ACTIVE, p.ref) then
    alarm_event(st, 'clear', p, kind, in_force or raised_limit, raised_limit)
  end
end

-- raise_alarm records an alarm; it returns its alarm:active entry, or nil
-- when it could not be stored.
local function raise_alarm(st, p, kind, limit)
  local entry = '{"kind":"' .. kind .. '","value":' .. p.value .. ',"limit":' .. limit .. ',"ts":' .. p.ts .. '}'
  if not alarm_call(st, p, 'HSET', KEY_ALARM_ACTIVE, p.ref, entry) then return nil end
  alarm_event(st, 'raise', p, kind, limit)
  return entry
end

-- check_point runs the alarm check of one sample: it clears an active alarm
-- the value no longer crosses, then raises one the value crosses. as is the
-- point's alarm:active entry (false or nil: none); it returns the entry as
-- the check leaves it.
local function check_point(st, p, hs, ls, as, h)
  local v = tonumber(p.value)
  local high = limit_number(st, p, KEY_ALARM_THRESHOLD, hs)
  local low = limit_number(st, p, KEY_ALARM_LOW, ls)
  local kind, raised_limit = nil, nil
  if as then
    kind, raised_limit = active_alarm(st, p, as)
    if not kind then as = false end
  end
  if kind then
    local hyst = hysteresis_number(st, p, h)
    local limit, in_force = high, hs
    if kind == 'low' then limit, in_force = low, ls end
    if not clears(kind, v, limit, hyst) then return as end
    clear_alarm(st, p, kind, in_force, raised_limit)
    as = false
  end
  if high and v > high then
    return raise_alarm(st, p, 'high', hs) or as
  elseif low and v < low then
    return raise_alarm(st, p, 'low', ls) or as
  end
  return as
end

-- alarm_lookup reads the entries of refs in an alarm hash; with if_any, it
-- returns nil without a lookup when the hash is empty (HLEN first: the
-- common case for alarm:low and alarm:active). It returns nil after
-- counting the error (against p) when the key is not a hash.
local function alarm_lookup(st, p, key, refs, if_any)
  local err
  if if_any then
    local n = rpcall('HLEN', key)
    err = redis_error(n)
    if n == 0 then return nil end
  end
  if not err then
    local v
    v, err = hmget(key, refs)
    if v then return v end
  end
  sample_error(st, p, 'alarm check without ' .. key .. ': ' .. err)
  return nil
end

-- hysteresis_lookup reads alarm:hysteresis for the refs with an active
-- alarm or a series only; it returns the entries by the refs' positions.
local function hysteresis_lookup(st, points, refs, actives, series)
  local wanted, at = nil, nil
  for i = 1, #refs do
    if actives[i] or series[i] then
      if not wanted then wanted, at = {}, {} end
      wanted[#wanted + 1] = refs[i]
      at[#wanted] = i
    end
  end
  local by_ref = {}
  if wanted then
    local hs = alarm_lookup(st, points[at[1]], KEY_ALARM_HYSTERESIS, wanted, true) or NONE
    for k = 1, #wanted do by_ref[at[k]] = hs[k] end
  end
  return by_ref
end

-- check_alarms runs the alarm check over the points forwarded in this call
-- (refs[i] is points[i].ref; series[i], when set, is every sample of that
-- point in the call, oldest first).
local function check_alarms(st, points, refs, series)
  if #refs == 0 then return end
  local p1 = points[1]
  local highs = alarm_lookup(st, p1, KEY_ALARM_THRESHOLD, refs, false)
  local lows = alarm_lookup(st, p1, KEY_ALARM_LOW, refs, true)
  local actives = alarm_lookup(st, p1, KEY_ALARM_ACTIVE, refs, true)
  if not (highs or lows or actives) then return end
  highs, lows, actives = highs or NONE, lows or NONE, actives or NONE
  local hysts = hysteresis_lookup(st, points, refs, actives, series)
  for i = 1, #refs do
    local hs, ls, as = highs[i], lows[i], actives[i]
    if hs or ls or as then
      local list = series[i]
      if list then
        for j = 1, #list do as = check_point(st, list[j], hs, ls, as, hysts[i]) end
      else
        check_point(st, points[i], hs, ls, as, hysts[i])
      end
    end
  end
end

-- in_time_order returns the samples of list not older than stored (a number
-- or nil), oldest first; samples of the same time keep their call order.
local function in_time_order(list, stored)
  local out = {}
  for j = 1, #list do
    local s = list[j]
    if not stored or s.tsn >= stored then
      local k = #out
      while k > 0 and out[k].tsn > s.tsn do
        out[k + 1] = out[k]
        k = k - 1
      end
      out[k + 1] = s
    end
  end
  return out
end

-- model_error counts every sample of the model md as not written, because
-- the command what failed with err.
local function model_error(st, md, what, err)
  local why = 'model ' .. md.model .. ' not written: ' .. what .. ': ' .. err
  local pts, all = md.points, md.all
  for x = 1, #pts do
    local list = all and all[x] or { pts[x] }
    for j = 1, #list do
      sample_error(st, list[j], why)
      st.mapped = st.mapped - 1
    end
  end
end

-- flush_model writes one model's points that are not older than the times
-- stored for them (one HMGET of modsrv:{model}:t, HSETs in chunks),
-- publishes one update, and appends the written points to points/refs and
-- their series (see check_alarms) for the alarm check. A model key that
-- is not a hash costs this model's points only.
local function flush_model(st, md, points, refs, series)
  local model, pts, all = md.model, md.points, md.all
  local names = {}
  for x = 1, #pts do names[x] = pts[x].name end
  local tkey = key_model_timestamps(model)
  local stored, err = hmget(tkey, names)
  if not stored then return model_error(st, md, 'HMGET ' .. tkey, err) end
  local hv, ht, parts, kept, olds = {}, {}, {}, {}, {}
  local k, ts, tsn = 0, nil, nil
  for x = 1, #pts do
    local p = pts[x]
    local old = stored[x] and tonumber(stored[x])
    if not old or p.tsn >= old then
      k = k + 1
      hv[2 * k - 1] = p.name
      hv[2 * k] = p.value
      ht[2 * k - 1] = p.name
      ht[2 * k] = p.ts
      parts[k] = json_string(p.name) .. ':' .. p.value
      kept[k] = x
      olds[k] = old
      if not tsn or p.tsn > tsn then ts, tsn = p.ts, p.tsn end
    end
  end
  if k == 0 then return end -- every sample is older than the stored one
  local vkey = key_model_values(model)
  err = hset_pairs(vkey, hv)
  if err then return model_error(st, md, 'HSET ' .. vkey, err) end
  err = hset_pairs(tkey, ht)
  if err then return model_error(st, md, 'HSET ' .. tkey, err) end
  call('PUBLISH', key_model_updates(model), '{"model":' .. json_string(model) .. ',"ts":' .. ts
    .. ',"values":{' .. concat(parts, ',') .. '}}')
  for j = 1, k do
    local x = kept[j]
    local i = #refs + 1
    refs[i] = pts[x].ref
    points[i] = pts[x]
    local list = all and all[x]
    if list then series[i] = in_time_order(list, olds[j]) end
  end
end

-- flush_models writes the model hashes, publishes one update per model and
-- runs the alarm check.
local function flush_models(st)
  local points, refs, series = {}, {}, {}
  for m = 1, #st.model_order do
    flush_model(st, st.models[st.model_order[m]], points, refs, series)
  end
  check_alarms(st, points, refs, series)
end

local function sync_measurement(_, args)
  local c, err = new_call('sync_measurement', args, 3, 4, { 'channel', 'point' })
  if err then return fail(err) end
  local ch, point, value, ts = args[1], args[2], args[3], args[4]
  err = check(c, 1, 'channel id', ch, id_problem, true) or sample_problem(c.fn, ch, point, value)
    or (ts and check(c, 4, 'ts_ms', ts, ts_rule))
  if err then return fail(err) end
  ts = ts or now_ms()

  err = write_channel(ch, { point, value }, { point, ts })
  if err then return fail(c.fn .. c.ids .. ': ' .. err) end
  local st = new_state(c.fn)
  local s = { ch = ch, point = point, value = value, ts = ts, tsn = tonumber(ts) }
  local entry = rpcall('HGET', KEY_MAPPING, ch .. ':' .. point)
  err = redis_error(entry)
  if err then return fail(c.fn .. c.ids .. ': HGET ' .. KEY_MAPPING .. ': ' .. err) end
  if map_point(st, s, entry) then
    flush_models(st)
  end
  flush_errors(st)
  if st.first then return fail(st.first) end
  return redis.status_reply('OK')
end

-- group_error returns the error of the group g of a sync_batch call that
-- starts at argument i, else nil; n is its point count.
local function group_error(args, g, i)
  local nargs = #args
  local c = { fn = 'sync_batch', ids = ' group ' .. g, inline = true }
  if i + 2 > nargs then
    return c.fn .. c.ids .. ' at argument ' .. i .. ': want <channel> <ts_ms> <n>, only '
      .. (nargs - i + 1) .. ' argument(s) left'
  end
  local err = check(c, i, 'channel id', args[i], id_problem)
  if err then return err end
  c.ids = c.ids .. ' channel=' .. args[i]
  err = check(c, i + 1, 'ts_ms', args[i + 1], ts_rule) or check(c, i + 2, 'n', args[i + 2], group_size_rule)
  if err then return err end
  local n = tonumber(args[i + 2])
  if i + 2 + 2 * n > nargs then
    return arg_message(c, i + 2, 'n=' .. n, nil, 'needs ' .. (2 * n) .. ' point/value arguments, only '
      .. (nargs - i - 2) .. ' left')
  end
  return nil
end

-- batch_groups checks the structure of a sync_batch call before anything is
-- written; it returns the argument position of each group, or nil and the error.
local function batch_groups(args)
  local nargs = #args
  if nargs == 0 then return nil, 'sync_batch: no groups, want ' .. USAGE.sync_batch end
  local starts = {}
  local i = 1
  while i <= nargs do
    local g = #starts + 1
    local err = group_error(args, g, i)
    if err then return nil, err end
    starts[g] = i
    i = i + 3 + 2 * tonumber(args[i + 2])
  end
  return starts
end

-- batch_group writes the channel hashes of one group (one HSET each, in
-- chunks) and appends its valid samples to samples and their mapping refs to
-- refs; it returns the number of samples written. A channel hash that is not
-- a hash costs the group's samples (counted as errors).
local function batch_group(st, args, base, samples, refs)
  local ch, ts = args[base], args[base + 1]
  local tsn = tonumber(ts)
  local prefix = ch .. ':'
  local mf, tf = {}, {}
  local k, nref = 0, #refs
  local nref0 = nref
  for j = 1, tonumber(args[base + 2]) do
    local point, value = args[base + 1 + 2 * j], args[base + 2 + 2 * j]
    local problem = sample_problem(st.fn, ch, point, value)
    if problem then
      add_error(st, ch, ts, problem)
    else
      k = k + 1
      mf[2 * k - 1] = point
      mf[2 * k] = value
      tf[2 * k - 1] = point
      tf[2 * k] = ts
      nref = nref + 1
      refs[nref] = prefix .. point
      samples[nref] = { ch = ch, point = point, value = value, ts = ts, tsn = tsn }
    end
  end
  if k == 0 then return 0 end
  local err = write_channel(ch, mf, tf)
  if err then
    local msg = st.fn .. ' channel=' .. ch .. ': ' .. err .. ' (' .. k .. ' point(s) of the group not stored)'
    for r = nref, nref0 + 1, -1 do
      add_error(st, ch, ts, msg)
      refs[r], samples[r] = nil, nil
    end
    return 0
  end
  return k
end

local function sync_batch(_, args)
  local starts, err = batch_groups(args)
  if not starts then return fail(err) end
  local st = new_state('sync_batch')
  local written = 0
  local samples, refs = {}, {}
  for g = 1, #starts do
    written = written + batch_group(st, args, starts[g], samples, refs)
  end
  if #refs > 0 then
    local entries
    entries, err = hmget(KEY_MAPPING, refs)
    if not entries then -- nothing can be forwarded
      for r = 1, #refs do sample_error(st, samples[r], 'not forwarded: HMGET ' .. KEY_MAPPING .. ': ' .. err) end
      entries = NONE
    end
    for r = 1, #refs do
      map_point(st, samples[r], entries[r])
    end
  end
  flush_models(st)
  flush_errors(st)
  return { written, st.mapped, st.errors, st.events, st.first or '' }
end

-- next_command_id returns the id of a command queued at ts (Unix ms, a
-- string): ts * 1000 + a sequence within the millisecond, and always above
-- the last id handed out (cmd:seq), so that ids grow and are not handed out
-- again after a Redis restart that lost cmd:seq.
local function next_command_id(ts)
  local id = tonumber(ts) * IDS_PER_MS
  local last = tonumber(call('GET', KEY_COMMAND_SEQ) or '')
  if last and last >= id then id = last + 1 end
  id = format('%.0f', id)
  call('SET', KEY_COMMAND_SEQ, id)
  return id
end

local function send_control(_, args)
  local c, err = new_call('send_control', args, 3, 5, { 'model', 'control' })
  if err then return fail(err) end
  local model, control, value, ttl, nonce = args[1], args[2], args[3], args[4], args[5]
  err = check(c, 1, 'model id', model, id_problem, true) or check(c, 2, 'control name', control, id_problem, true)
    or check(c, 3, 'value', value, number_rule) or (ttl and check(c, 4, 'ttl_ms', ttl, ttl_rule))
    or (nonce and check(c, 5, 'nonce', nonce, nonce_rule))
  if err then return fail(err) end
  ttl = ttl or DEFAULT_TTL_MS
  local ref = model .. ':' .. control
  local target = call('HGET', KEY_MAPPING_REVERSE, ref)
  if not target then
    return fail(c.fn .. c.ids .. ': no ' .. KEY_MAPPING_REVERSE .. ' entry ' .. quote(ref))
  end
  local ch, point = split_ref(target)
  if not ch then
    return fail(c.fn .. c.ids .. ': ' .. KEY_MAPPING_REVERSE .. ' entry ' .. quote(ref) .. ' holds '
      .. quote(target) .. ', want "{channel}:{point}" with valid ids')
  end

  local ts = now_ms()
  local id = next_command_id(ts)
  local deadline = format('%d', tonumber(ts) + tonumber(ttl))
  local extra = ''
  if nonce then extra = ',"nonce":"' .. nonce .. '"' end
  call('HSET', key_command(ch), point, value)
  call('LPUSH', key_command_queue(ch), '{"id":' .. id .. ',"channel":' .. json_string(ch)
    .. ',"point":' .. json_string(point) .. ',"value":' .. value .. ',"model":' .. json_string(model)
    .. ',"control":' .. json_string(control) .. ',"ts":' .. ts .. ',"deadline":' .. deadline .. extra .. '}')
  call('LTRIM', key_command_queue(ch), '0', COMMAND_QUEUE_LAST)
  call('SADD', KEY_COMMAND_PENDING, ch)
  call('PUBLISH', key_command(ch), point .. ':' .. value)
  return tonumber(id)
end

local function take_controls(_, args)
  local c, err = new_call('take_controls', args, 2, 2, { 'channel' })
  if err then return fail(err) end
  local ch, max = args[1], args[2]
  err = check(c, 1, 'channel id', ch, id_problem, true) or check(c, 2, 'max', max, take_rule)
  if err then return fail(err) end
  local queue = key_command_queue(ch)
  local taken = call('RPOP', queue, max)
  if call('LLEN', queue) == 0 then
    call('SREM', KEY_COMMAND_PENDING, ch)
  end
  if not taken then return {} end
  local fields = {}
  for i = 1, #taken do
    local id = match(taken[i], '^{"id":(%d+),')
    if id then
      fields[#fields + 1] = id
      fields[#fields + 1] = taken[i]
    end
  end
  if #fields > 0 then call('HSET', KEY_COMMAND_INFLIGHT, unpack(fields)) end
  return taken
end

local function control_sent(_, args)
  local c, err = new_call('control_sent', args, 1, 1)
  if err then return fail(err) end
  local id = args[1]
  err = check(c, 1, 'id', id, command_id_rule)
  if err then return fail(err) end
  if call('HEXISTS', KEY_COMMAND_INFLIGHT, id) == 0 then return 0 end
  call('HSET', KEY_COMMAND_SENT, id, now_ms())
  return 1
end

-- Outcomes control_result accepts (comsrv/control.Status).
local RESULT_STATUSES = {
  ok = true, exception = true, timeout = true, offline = true, expired = true, invalid = true, failed = true,
  unknown = true,
}
local RESULT_STATUS_LIST = 'ok, exception, timeout, offline, expired, invalid, failed, unknown'

local function status_rule(s)
  if not RESULT_STATUSES[s] then return 'is not one of ' .. RESULT_STATUS_LIST end
end

-- record_result writes an outcome: f = { id, status, code, message, channel,
-- point, value, model, control, nonce (nil for none) }; the command is no
-- longer in flight.
local function record_result(f, ttl, maxlen)
  local id, ts = f[1], now_ms()
  local fields = { 'status', f[2], 'code', f[3], 'message', f[4], 'channel', f[5], 'point', f[6],
    'value', f[7], 'model', f[8], 'control', f[9], 'ts', ts }
  if f[10] then
    fields[#fields + 1] = 'nonce'
    fields[#fields + 1] = f[10]
  end
  local key = key_command_result(id)
  call('DEL', key)
  call('HSET', key, unpack(fields))
  call('PEXPIRE', key, ttl)
  call('XADD', KEY_COMMAND_RESULTS, 'MAXLEN', '~', maxlen, '*', 'id', id, unpack(fields))
  call('HDEL', KEY_COMMAND_INFLIGHT, id)
  call('HDEL', KEY_COMMAND_SENT, id)
  local last
  if f[8] ~= '' and f[9] ~= '' then
    last = f[8] .. ':' .. f[9]
  elseif f[6] ~= '' then
    last = f[5] .. ':' .. f[6]
  end
  if last then
    call('HSET', KEY_CONTROL_LAST, last, '{"id":' .. json_string(id) .. ',"status":' .. json_string(f[2])
      .. ',"code":' .. f[3] .. ',"message":' .. json_string(f[4]) .. ',"value":' .. json_string(f[7])
      .. ',"ts":' .. ts .. '}')
  end
end

local function control_result(_, args)
  local c, err = new_call('control_result', args, 11, 12)
  if err then return fail(err) end
  local id, status, code, message, ch, point, value, model, control, ttl, maxlen, nonce = unpack(args, 1, 12)
  c.ids = ' id=' .. quote(id)
  err = check(c, 1, 'id', id, command_id_rule, true)
  if err then return fail(err) end
  c.ids = ' id=' .. id
  err = check(c, 2, 'status', status, status_rule)
  if err then return fail(err) end
  c.ids = c.ids .. ' status=' .. status
  err = check(c, 3, 'code', code, code_rule)
    or check(c, 4, 'message of ' .. #message .. ' bytes', message, message_rule)
    or check(c, 5, 'channel id', ch, id_problem) or check(c, 6, 'point id', point, optional_id)
    or check(c, 7, 'value', value, optional_number) or check(c, 8, 'model id', model, optional_id)
    or check(c, 9, 'control name', control, optional_id) or check(c, 10, 'ttl_ms', ttl, ttl_rule)
    or check(c, 11, 'maxlen', maxlen, maxlen_rule) or (nonce and check(c, 12, 'nonce', nonce, nonce_rule))
  if err then return fail(err) end
  record_result({ id, status, code, message, ch, point, value, model, control, nonce }, ttl, maxlen)
  return redis.status_reply('OK')
end

-- command_fields returns the result fields of a command taken from a
-- queue (JSON as send_control wrote it), or nil when it cannot be answered
-- (no valid channel). Fields that are not valid are recorded as "".
local function command_fields(id, entry)
  local ok, cmd = pcall(cjson.decode, entry)
  if not ok or type(cmd) ~= 'table' or type(cmd.channel) ~= 'string' or id_problem(cmd.channel) then return nil end
  local function id_or_empty(s)
    if type(s) ~= 'string' or id_problem(s) then return '' end
    return s
  end
  local value = match(entry, '"value":(%-?[%d%.eE%+%-]+)[,}]') or ''
  if not is_number(value) then value = '' end
  local nonce = cmd.nonce
  if type(nonce) ~= 'string' or nonce_rule(nonce) then nonce = nil end
  return { id, '', '0', '', cmd.channel, id_or_empty(cmd.point), value, id_or_empty(cmd.model),
    id_or_empty(cmd.control), nonce }, tonumber(cmd.deadline)
end

local function recover_controls(_, args)
  local c, err = new_call('recover_controls', args, 2, 2)
  if err then return fail(err) end
  local ttl, maxlen = args[1], args[2]
  err = check(c, 1, 'ttl_ms', ttl, ttl_rule) or check(c, 2, 'maxlen', maxlen, maxlen_rule)
  if err then return fail(err) end
  local inflight = call('HGETALL', KEY_COMMAND_INFLIGHT)
  local sent = {}
  local marks = call('HGETALL', KEY_COMMAND_SENT)
  for i = 1, #marks, 2 do sent[marks[i]] = true end
  local now = tonumber(now_ms())
  local requeued, expired, unknown, dropped = 0, 0, 0, 0
  local back, channels = {}, {}
  for i = 1, #inflight, 2 do
    local id, entry = inflight[i], inflight[i + 1]
    local f, deadline = command_fields(id, entry)
    if not f or command_id_rule(id) or call('EXISTS', key_command_result(id)) == 1 then
      dropped = dropped + 1 -- unanswerable, or answered already
    elseif sent[id] then
      f[2], f[4] = 'unknown', MSG_RESTARTED
      record_result(f, ttl, maxlen)
      unknown = unknown + 1
    elseif deadline and deadline > 0 and deadline < now then
      f[2], f[4] = 'expired', MSG_EXPIRED
      record_result(f, ttl, maxlen)
      expired = expired + 1
    else
      local ch = f[5]
      if not back[ch] then
        back[ch] = {}
        channels[#channels + 1] = ch
      end
      local list = back[ch]
      list[#list + 1] = { tonumber(id), entry }
      requeued = requeued + 1
    end
  end
  for _, ch in ipairs(channels) do
    local list = back[ch]
    table.sort(list, function(a, b) return a[1] > b[1] end) -- newest first: the oldest ends at the tail
    local entries = {}
    for k = 1, #list do entries[k] = list[k][2] end
    call('RPUSH', key_command_queue(ch), unpack(entries))
    call('SADD', KEY_COMMAND_PENDING, ch)
  end
  call('DEL', KEY_COMMAND_INFLIGHT, KEY_COMMAND_SENT)
  return { requeued, expired, unknown, dropped }
end

local function quality_rule(s)
  if s ~= QUALITY_STALE and s ~= 'good' then return 'is neither "stale" nor "good"' end
end

-- quality_models groups the mapped points among refs by model, in the order
-- first seen: it returns the models' names and their point names.
local function quality_models(refs)
  local entries = must(hmget(KEY_MAPPING, refs))
  local names, order = {}, {}
  for k = 1, #refs do
    local entry = entries[k]
    local model, name = nil, nil
    if entry then model, name = split_ref(entry) end
    if model then
      local md = names[model]
      if not md then
        md = { seen = {} }
        names[model] = md
        order[#order + 1] = model
      end
      if not md.seen[name] then
        md.seen[name] = true
        md[#md + 1] = name
      end
    end
  end
  return order, names
end

-- set_all sets fields to stale, or deletes them (good).
local function set_all(key, fields, stale)
  if stale then return hset_all(key, fields, QUALITY_STALE) end
  return hdel_all(key, fields)
end

local function set_quality(_, args)
  local c, err = new_call('set_quality', args, 3)
  c.inline = true
  local ch, quality = args[1], args[2]
  err = err or check(c, 1, 'channel id', ch, id_problem)
  if err then return fail(err) end
  c.ids = ' channel=' .. ch
  err = check(c, 2, 'quality', quality, quality_rule)
  if err then return fail(err) end
  local stale = quality == QUALITY_STALE
  local points, refs = {}, {}
  local prefix = ch .. ':'
  for i = 3, #args do
    local point = args[i]
    err = check(c, i, 'point id', point, id_problem)
    if err then return fail(err) end
    points[i - 2] = point
    refs[i - 2] = prefix .. point
  end

  set_all(key_channel_quality(ch), points, stale)
  local order, names_by_model = quality_models(refs)
  local changed, ts = 0, nil
  local qjson = '"' .. quality .. '"'
  for m = 1, #order do
    local model = order[m]
    local names = names_by_model[model]
    local key = key_model_quality(model)
    local current = must(hmget(key, names))
    local diff = {}
    for x = 1, #names do
      local q = current[x]
      if (stale and q ~= QUALITY_STALE) or (not stale and q) then
        diff[#diff + 1] = names[x]
      end
    end
    if #diff > 0 then
      set_all(key, diff, stale)
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
redis.register_function{ function_name = 'control_sent', callback = entry(control_sent) }
redis.register_function{ function_name = 'recover_controls', callback = entry(recover_controls) }
redis.register_function{ function_name = 'set_quality', callback = entry(set_quality) }
redis.register_function{ function_name = 'voltedge_version', callback = voltedge_version, flags = { 'no-writes' } }
