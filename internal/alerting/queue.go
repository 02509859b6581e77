package alerting

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
)

// QueueGroup is the consumer group alarmsrv reads each webhook queue with.
const QueueGroup = "alarmsrv"

// Fields of a queue entry (keys.WebhookQueue) and of a dead letter
// (keys.WebhookDead, which adds the Dead* fields).
const (
	FieldID         = "id"   // delivery id: the webhook-id header
	FieldKey        = "key"  // ordering key, may be empty
	FieldBody       = "body" // request body
	FieldTS         = "ts"   // queued, Unix ms
	FieldTarget     = "target"
	FieldAttempts   = "attempts"
	FieldLastStatus = "last_status"
	FieldLastError  = "last_error"
	FieldDeadAt     = "dead_at"
)

// Fields of a target's counters (keys.WebhookStats). Matched, delivered,
// dead and dropped only grow (dead falls when a dead letter is sent
// again). ReadStats adds what the queue holds: failed (waiting for a
// retry: an entry in keys.WebhookRetry), inflight (read by alarmsrv, not
// failed yet: waiting for a free connection or being sent) and queued
// (not read yet). At every moment matched = delivered + failed + inflight
// + queued + dead + dropped.
const (
	StatMatched      = "matched"
	StatDelivered    = "delivered"
	StatDead         = "dead"
	StatDropped      = "dropped"
	StatAttempts     = "attempts"      // requests made
	StatFailingSince = "failing_since" // Unix ms of the first failure since the last success
	StatLastSuccess  = "last_success"  // Unix ms
	StatLastStatus   = "last_status"   // HTTP status of the last attempt, 0: no answer
	StatLastError    = "last_error"
)

// Errors.
var (
	ErrUnknownTarget = errors.New("no such webhook target")
	ErrNotFound      = errors.New("no such dead letter")
)

// QueueEntry is a delivery as queued.
type QueueEntry struct {
	ID   string
	Key  string
	Body []byte
	TS   int64 // Unix ms
}

var enqueueScript = rueidis.NewLuaScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return redis.error_reply('UNKNOWN target') end
local id = redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'key', ARGV[3], 'body', ARGV[4], 'ts', ARGV[5])
redis.call('HINCRBY', KEYS[3], 'matched', 1)
return id`)

// Enqueue adds e to target's queue and counts it matched, in one step: when
// it returns nil the delivery is in Redis. A target missing from
// keys.WebhookTargets gives ErrUnknownTarget; a disabled target's queue
// waits until it is enabled.
func Enqueue(ctx context.Context, c rueidis.Client, target string, e QueueEntry) (string, error) {
	id, err := enqueueScript.Exec(ctx, c,
		[]string{keys.WebhookTargets, keys.WebhookQueue(target), keys.WebhookStats(target)},
		[]string{target, e.ID, e.Key, string(e.Body), strconv.FormatInt(e.TS, 10)}).ToString()
	if err != nil {
		if re, ok := rueidis.IsRedisErr(err); ok && re.Error() == "UNKNOWN target" {
			return "", fmt.Errorf("%w: %s", ErrUnknownTarget, target)
		}
		return "", fmt.Errorf("queue delivery %s for %s: %w", e.ID, target, err)
	}
	return id, nil
}

// TargetEntry is a delivery for one target, for EnqueueMany.
type TargetEntry struct {
	Target string
	QueueEntry
}

var enqueueManyScript = rueidis.NewLuaScript(`
local n = tonumber(ARGV[1])
for i = 1, n do
  if redis.call('HEXISTS', KEYS[1], ARGV[1 + i]) == 0 then return redis.error_reply('UNKNOWN ' .. ARGV[1 + i]) end
end
local counts = {}
local ids = {}
for j = n + 2, #ARGV, 5 do
  local t = tonumber(ARGV[j])
  ids[#ids + 1] = redis.call('XADD', KEYS[2 * t], '*', 'id', ARGV[j + 1], 'key', ARGV[j + 2], 'body', ARGV[j + 3], 'ts', ARGV[j + 4])
  counts[t] = (counts[t] or 0) + 1
end
for t, c in pairs(counts) do redis.call('HINCRBY', KEYS[2 * t + 1], 'matched', c) end
return ids`)

// EnqueueMany adds entries to their targets' queues in one step: all or,
// when a target is unknown (ErrUnknownTarget), none. It returns the queue
// entry ids in the order of entries.
func EnqueueMany(ctx context.Context, c rueidis.Client, entries []TargetEntry) ([]string, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	index := map[string]int{}
	var targets []string
	ks := []string{keys.WebhookTargets}
	for _, e := range entries {
		if _, ok := index[e.Target]; !ok {
			targets = append(targets, e.Target)
			index[e.Target] = len(targets)
			ks = append(ks, keys.WebhookQueue(e.Target), keys.WebhookStats(e.Target))
		}
	}
	args := make([]string, 0, 1+len(targets)+5*len(entries))
	args = append(args, strconv.Itoa(len(targets)))
	args = append(args, targets...)
	for _, e := range entries {
		args = append(args, strconv.Itoa(index[e.Target]), e.ID, e.Key, string(e.Body), strconv.FormatInt(e.TS, 10))
	}
	ids, err := enqueueManyScript.Exec(ctx, c, ks, args).AsStrSlice()
	if err != nil {
		if re, ok := rueidis.IsRedisErr(err); ok && strings.HasPrefix(re.Error(), "UNKNOWN ") {
			return nil, fmt.Errorf("%w: %s", ErrUnknownTarget, strings.TrimPrefix(re.Error(), "UNKNOWN "))
		}
		return nil, fmt.Errorf("queue %d deliveries: %w", len(entries), err)
	}
	return ids, nil
}

// TargetStats are a target's counters. Failed, InFlight and Queued are
// read from the queue in the same step: Failed is the number of retry
// states, InFlight the group's pending entries that have none, Queued
// the entries not read yet.
type TargetStats struct {
	Target       string `json:"target"`
	Matched      int64  `json:"matched"`
	Delivered    int64  `json:"delivered"`
	Failed       int64  `json:"failed"`
	InFlight     int64  `json:"inflight"`
	Queued       int64  `json:"queued"`
	Dead         int64  `json:"dead"`
	Dropped      int64  `json:"dropped"`
	Attempts     int64  `json:"attempts"`
	FailingSince int64  `json:"failing_since,omitempty"`
	LastSuccess  int64  `json:"last_success,omitempty"`
	LastStatus   int64  `json:"last_status,omitempty"`
	LastError    string `json:"last_error,omitempty"`
}

// Reconciles reports whether matched = delivered + failed + inflight +
// queued + dead + dropped with no part negative.
func (s TargetStats) Reconciles() bool {
	return s.Delivered >= 0 && s.Failed >= 0 && s.InFlight >= 0 && s.Queued >= 0 && s.Dead >= 0 && s.Dropped >= 0 &&
		s.Matched == s.Delivered+s.Failed+s.InFlight+s.Queued+s.Dead+s.Dropped
}

var statsScript = rueidis.NewLuaScript(`
local h = redis.call('HGETALL', KEYS[1])
local pending = 0
if redis.call('EXISTS', KEYS[2]) == 1 then
  local p = redis.pcall('XPENDING', KEYS[2], ARGV[1])
  if type(p) == 'table' and p.err == nil then pending = p[1] end
end
table.insert(h, 'xlen')
table.insert(h, tostring(redis.call('XLEN', KEYS[2])))
table.insert(h, 'pending')
table.insert(h, tostring(pending))
table.insert(h, 'retrying')
table.insert(h, tostring(redis.call('HLEN', KEYS[3])))
return h`)

// ReadStats reads target's counters in one step.
func ReadStats(ctx context.Context, c rueidis.Client, target string) (TargetStats, error) {
	m, err := statsScript.Exec(ctx, c, []string{keys.WebhookStats(target), keys.WebhookQueue(target), keys.WebhookRetry(target)},
		[]string{QueueGroup}).AsStrMap()
	if err != nil {
		return TargetStats{}, fmt.Errorf("counters of %s: %w", target, err)
	}
	n := func(f string) int64 { v, _ := strconv.ParseInt(m[f], 10, 64); return v }
	s := TargetStats{
		Target: target, Matched: n(StatMatched), Delivered: n(StatDelivered), Failed: n("retrying"),
		Dead: n(StatDead), Dropped: n(StatDropped), Attempts: n(StatAttempts),
		FailingSince: n(StatFailingSince), LastSuccess: n(StatLastSuccess), LastStatus: n(StatLastStatus),
		LastError: m[StatLastError],
	}
	s.InFlight = n("pending") - s.Failed
	s.Queued = n("xlen") - n("pending")
	return s, nil
}

// DeadLetter is a delivery whose last attempt failed (keys.WebhookDead).
type DeadLetter struct {
	// Entry is the dead letter's stream id, for RetryDead.
	Entry      string `json:"entry"`
	Target     string `json:"target"`
	ID         string `json:"id"`
	Key        string `json:"key,omitempty"`
	Body       string `json:"body"`
	TS         int64  `json:"ts"`
	Attempts   int    `json:"attempts"`
	LastStatus int    `json:"last_status"`
	LastError  string `json:"last_error,omitempty"`
	DeadAt     int64  `json:"dead_at"`
}

// ListDead returns up to count dead letters from the stream id from on
// ("" or "-": the oldest), oldest first, and the id to continue from (""
// at the end).
func ListDead(ctx context.Context, c rueidis.Client, from string, count int) ([]DeadLetter, string, error) {
	if from == "" {
		from = "-"
	}
	if count <= 0 || count > 1000 {
		count = 100
	}
	es, err := c.Do(ctx, c.B().Xrange().Key(keys.WebhookDead).Start(from).End("+").Count(int64(count)+1).Build()).AsXRange()
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", keys.WebhookDead, err)
	}
	next := ""
	if len(es) > count {
		next, es = es[count].ID, es[:count]
	}
	out := make([]DeadLetter, len(es))
	for i, e := range es {
		out[i] = deadLetter(e)
	}
	return out, next, nil
}

func deadLetter(e rueidis.XRangeEntry) DeadLetter {
	f := e.FieldValues
	n := func(k string) int64 { v, _ := strconv.ParseInt(f[k], 10, 64); return v }
	return DeadLetter{Entry: e.ID, Target: f[FieldTarget], ID: f[FieldID], Key: f[FieldKey], Body: f[FieldBody],
		TS: n(FieldTS), Attempts: int(n(FieldAttempts)), LastStatus: int(n(FieldLastStatus)),
		LastError: f[FieldLastError], DeadAt: n(FieldDeadAt)}
}

var retryDeadScript = rueidis.NewLuaScript(`
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then return 0 end
local f = {}
local kv = e[1][2]
for i = 1, #kv, 2 do f[kv[i]] = kv[i+1] end
if f['target'] ~= ARGV[2] then return redis.error_reply('TARGET mismatch') end
if redis.call('HEXISTS', KEYS[4], ARGV[2]) == 0 then return -1 end
redis.call('XADD', KEYS[2], '*', 'id', f['id'] or '', 'key', f['key'] or '', 'body', f['body'] or '', 'ts', f['ts'] or '0')
redis.call('HINCRBY', KEYS[3], 'dead', -1)
redis.call('XDEL', KEYS[1], ARGV[1])
return 1`)

// RetryDead queues the dead letter entry again for its target (with a
// fresh schedule) and removes it from keys.WebhookDead, in one step.
// ErrNotFound: no such dead letter; ErrUnknownTarget: its target is gone.
func RetryDead(ctx context.Context, c rueidis.Client, entry string) error {
	es, err := c.Do(ctx, c.B().Xrange().Key(keys.WebhookDead).Start(entry).End(entry).Build()).AsXRange()
	if err != nil {
		return fmt.Errorf("read dead letter %s: %w", entry, err)
	}
	if len(es) == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, entry)
	}
	return retryDead(ctx, c, es[0].ID, es[0].FieldValues[FieldTarget])
}

func retryDead(ctx context.Context, c rueidis.Client, entry, target string) error {
	n, err := retryDeadScript.Exec(ctx, c,
		[]string{keys.WebhookDead, keys.WebhookQueue(target), keys.WebhookStats(target), keys.WebhookTargets},
		[]string{entry, target}).AsInt64()
	switch {
	case err != nil:
		return fmt.Errorf("retry dead letter %s: %w", entry, err)
	case n == 0:
		return fmt.Errorf("%w: %s", ErrNotFound, entry)
	case n < 0:
		return fmt.Errorf("%w: %s (dead letter %s)", ErrUnknownTarget, target, entry)
	}
	return nil
}

// RetryDeadRange queues again the dead letters that died between from and
// to (inclusive; a zero to: up to now) whose target still exists, and
// returns how many; target "" means every target.
func RetryDeadRange(ctx context.Context, c rueidis.Client, target string, from, to time.Time) (int, error) {
	if to.IsZero() {
		to = time.Now()
	}
	start, end := strconv.FormatInt(from.UnixMilli(), 10), strconv.FormatInt(to.UnixMilli(), 10)
	done := 0
	for {
		es, err := c.Do(ctx, c.B().Xrange().Key(keys.WebhookDead).Start(start).End(end).Count(500).Build()).AsXRange()
		if err != nil {
			return done, fmt.Errorf("read %s: %w", keys.WebhookDead, err)
		}
		for _, e := range es {
			t := e.FieldValues[FieldTarget]
			if target != "" && t != target {
				continue
			}
			err := retryDead(ctx, c, e.ID, t)
			switch {
			case err == nil:
				done++
			case errors.Is(err, ErrNotFound), errors.Is(err, ErrUnknownTarget):
			default:
				return done, err
			}
		}
		if len(es) < 500 {
			return done, nil
		}
		start = "(" + es[len(es)-1].ID
	}
}

// WriteMetrics writes the counters in the Prometheus text format, for a
// service's /metrics: alarmsrv_webhook_deliveries{target,state} for each
// part of matched, and alarmsrv_webhook_matched_total and
// alarmsrv_webhook_attempts_total per target.
func WriteMetrics(w io.Writer, stats []TargetStats) error {
	b := bufio.NewWriter(w)
	b.WriteString("# HELP alarmsrv_webhook_matched_total Deliveries queued for the target.\n# TYPE alarmsrv_webhook_matched_total counter\n")
	for _, s := range stats {
		fmt.Fprintf(b, "alarmsrv_webhook_matched_total{target=%q} %d\n", s.Target, s.Matched)
	}
	b.WriteString("# HELP alarmsrv_webhook_attempts_total Requests made to the target.\n# TYPE alarmsrv_webhook_attempts_total counter\n")
	for _, s := range stats {
		fmt.Fprintf(b, "alarmsrv_webhook_attempts_total{target=%q} %d\n", s.Target, s.Attempts)
	}
	b.WriteString("# HELP alarmsrv_webhook_deliveries Deliveries by state; the states add up to matched.\n# TYPE alarmsrv_webhook_deliveries gauge\n")
	for _, s := range stats {
		for _, p := range []struct {
			state string
			n     int64
		}{{"delivered", s.Delivered}, {"failed", s.Failed}, {"inflight", s.InFlight}, {"queued", s.Queued}, {"dead", s.Dead}, {"dropped", s.Dropped}} {
			fmt.Fprintf(b, "alarmsrv_webhook_deliveries{target=%q,state=%q} %d\n", s.Target, p.state, p.n)
		}
	}
	return b.Flush()
}
