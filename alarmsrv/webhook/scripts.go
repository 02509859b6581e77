package webhook

import "github.com/redis/rueidis"

// The scripts change a queue, its retry state and its counters in one
// step, so that matched = delivered + failed + inflight + queued + dead +
// dropped holds at every moment (internal/alerting.TargetStats).
//
// KEYS: 1 queue, 2 retry hash, 3 counters (4 dead-letter stream).
//
// An attempt under way is marked in the retry hash by the field "@" and
// its entry id; the outcome scripts act only when they remove the mark, so
// running one twice (its answer was lost to a broken connection) changes
// nothing the second time.

// beginScript: an attempt of entry ARGV[1] starts. 0: the entry is gone.
var beginScript = rueidis.NewLuaScript(`
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return 0 end
if redis.call('HSETNX', KEYS[2], '@' .. ARGV[1], 1) == 0 then return 1 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then redis.call('HINCRBY', KEYS[3], 'failed', -1) end
redis.call('HINCRBY', KEYS[3], 'inflight', 1)
redis.call('HINCRBY', KEYS[3], 'attempts', 1)
return 1`)

// abortScript: an attempt ended without an outcome (alarmsrv stops); the
// entry stays in the queue as it was.
var abortScript = rueidis.NewLuaScript(`
if redis.call('HDEL', KEYS[2], '@' .. ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[3], 'inflight', -1)
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then redis.call('HINCRBY', KEYS[3], 'failed', 1) end
return 1`)

// deliveredScript: ARGV group, entry, now (ms), status.
var deliveredScript = rueidis.NewLuaScript(`
if redis.call('HDEL', KEYS[2], '@' .. ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[3], 'inflight', -1)
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if redis.call('XDEL', KEYS[1], ARGV[2]) == 1 then redis.call('HINCRBY', KEYS[3], 'delivered', 1) end
redis.call('HSET', KEYS[3], 'last_success', ARGV[3], 'last_status', ARGV[4], 'last_error', '')
redis.call('HDEL', KEYS[3], 'failing_since')
return 1`)

// retryScript: ARGV entry, retry state JSON, now (ms), status, error.
// Returns failing_since.
var retryScript = rueidis.NewLuaScript(`
if redis.call('HDEL', KEYS[2], '@' .. ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[3], 'inflight', -1)
  if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
    redis.call('HINCRBY', KEYS[3], 'failed', 1)
  end
  redis.call('HSETNX', KEYS[3], 'failing_since', ARGV[3])
  redis.call('HSET', KEYS[3], 'last_status', ARGV[4], 'last_error', ARGV[5])
end
return redis.call('HGET', KEYS[3], 'failing_since')`)

// deadScript: ARGV group, entry, now (ms), status, error, target, id, key,
// body, ts, attempts. Returns failing_since.
var deadScript = rueidis.NewLuaScript(`
if redis.call('HDEL', KEYS[2], '@' .. ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[3], 'inflight', -1)
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  if redis.call('XDEL', KEYS[1], ARGV[2]) == 1 then
    redis.call('XADD', KEYS[4], '*', 'target', ARGV[6], 'id', ARGV[7], 'key', ARGV[8], 'body', ARGV[9], 'ts', ARGV[10],
      'attempts', ARGV[11], 'last_status', ARGV[4], 'last_error', ARGV[5], 'dead_at', ARGV[3])
    redis.call('HINCRBY', KEYS[3], 'dead', 1)
  end
  redis.call('HSETNX', KEYS[3], 'failing_since', ARGV[3])
  redis.call('HSET', KEYS[3], 'last_status', ARGV[4], 'last_error', ARGV[5])
end
return redis.call('HGET', KEYS[3], 'failing_since')`)

// recountScript: nothing of the target is in flight (a worker starts):
// the marks of attempts cut short are removed, and every delivery with a
// retry state waits for its retry.
var recountScript = rueidis.NewLuaScript(`
for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
  if string.sub(f, 1, 1) == '@' then redis.call('HDEL', KEYS[2], f) end
end
redis.call('HSET', KEYS[3], 'inflight', 0, 'failed', redis.call('HLEN', KEYS[2]))
return 1`)

// dropScript: the target ARGV[1] is deleted (KEYS[4] is keys.WebhookTargets):
// its queue and retry state go, counted dropped. Returns how many, or -1
// when the target exists again.
var dropScript = rueidis.NewLuaScript(`
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then return -1 end
local n = redis.call('XLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
if n > 0 or redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HINCRBY', KEYS[3], 'dropped', n)
  redis.call('HSET', KEYS[3], 'inflight', 0, 'failed', 0)
end
return n`)
