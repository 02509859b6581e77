package webhook

import "github.com/redis/rueidis"

// The scripts record an attempt's outcome: the queue entry, its retry
// state and the target's counters change in one step, so that matched =
// delivered + failed + inflight + queued + dead + dropped holds at every
// moment (internal/alerting.ReadStats derives failed, inflight and queued
// from the retry hash, the group's pending entries and the queue).
//
// KEYS: 1 queue, 2 retry hash, 3 counters (4 dead-letter stream).
//
// Each acts only if the entry is still in the queue, so running one twice
// (its answer was lost to a broken connection, and it was sent again)
// changes nothing the second time.

// deliveredScript: ARGV group, entry, now (ms), status.
var deliveredScript = rueidis.NewLuaScript(`
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if redis.call('XDEL', KEYS[1], ARGV[2]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'delivered', 1)
redis.call('HINCRBY', KEYS[3], 'attempts', 1)
redis.call('HSET', KEYS[3], 'last_success', ARGV[3], 'last_status', ARGV[4], 'last_error', '')
redis.call('HDEL', KEYS[3], 'failing_since')
return 1`)

// retryScript: ARGV entry, retry state JSON, now (ms), status, error.
// Returns failing_since.
var retryScript = rueidis.NewLuaScript(`
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return false end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('HINCRBY', KEYS[3], 'attempts', 1)
end
redis.call('HSETNX', KEYS[3], 'failing_since', ARGV[3])
redis.call('HSET', KEYS[3], 'last_status', ARGV[4], 'last_error', ARGV[5])
return redis.call('HGET', KEYS[3], 'failing_since')`)

// deadScript: ARGV group, entry, now (ms), status, error, target, id, key,
// body, ts, attempts. Returns failing_since.
var deadScript = rueidis.NewLuaScript(`
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if redis.call('XDEL', KEYS[1], ARGV[2]) == 0 then return false end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('XADD', KEYS[4], '*', 'target', ARGV[6], 'id', ARGV[7], 'key', ARGV[8], 'body', ARGV[9], 'ts', ARGV[10],
  'attempts', ARGV[11], 'last_status', ARGV[4], 'last_error', ARGV[5], 'dead_at', ARGV[3])
redis.call('HINCRBY', KEYS[3], 'dead', 1)
redis.call('HINCRBY', KEYS[3], 'attempts', 1)
redis.call('HSETNX', KEYS[3], 'failing_since', ARGV[3])
redis.call('HSET', KEYS[3], 'last_status', ARGV[4], 'last_error', ARGV[5])
return redis.call('HGET', KEYS[3], 'failing_since')`)

// dropScript: the target ARGV[1] is deleted (KEYS[4] is keys.WebhookTargets):
// its queue (with its group) and retry state go, counted dropped. Returns
// how many, or -1 when the target exists again.
var dropScript = rueidis.NewLuaScript(`
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then return -1 end
local n = redis.call('XLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
if n > 0 then redis.call('HINCRBY', KEYS[3], 'dropped', n) end
return n`)
