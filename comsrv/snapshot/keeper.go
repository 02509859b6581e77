// Package snapshot keeps comsrv's copy of the run-time configuration
// (keys.RuntimeConfig: mappings, alarm limits, the device registry) in a
// file on disk, and puts it back into Redis when Redis restarted without
// its data.
//
// Every interval the Keeper reads the Redis run id (INFO server, cheap).
// When it is not the run the marker keys.ConfigRestore was last confirmed
// for, Redis has restarted (or was never checked): every configuration key
// missing in Redis is restored from the file, keys that exist are left
// alone (someone may have loaded new mappings), the channel set is
// republished and the marker is written for the new run. Otherwise the
// configuration hashes are read, and written to the file when their content
// changed, only when a keyspace notification said one of them changed (the
// Keeper turns on the notifications it needs: K, g and h), or at the latest
// every FullReadInterval; without notifications (CONFIG refused) they are
// read at every interval. Reading the marker and the hashes in one
// transaction makes sure that an empty Redis that has just restarted is
// never taken for the configuration.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/logging"
	"github.com/voltedge/voltedge/internal/redisconn"
)

// DefaultInterval is how often the Keeper looks at Redis.
const DefaultInterval = time.Second

// FullReadInterval is the longest time between two full reads of the
// configuration while keyspace notifications work (in case one was lost).
const FullReadInterval = time.Minute

// notifyFlags are the keyspace notification classes the Keeper needs:
// keyspace channels (K), generic commands such as DEL and RENAME (g) and
// hash commands (h).
const notifyFlags = "Kgh"

// restoreChunk is the number of fields per HSET when a hash is restored.
const restoreChunk = 1000

// callTimeout bounds one round of Redis calls.
const callTimeout = 10 * time.Second

// Options configure a Keeper.
type Options struct {
	// Path is the snapshot file; "" keeps no snapshot (after a restart the
	// channel set is still republished and the marker written).
	Path string
	// Interval is how often Redis is looked at (DefaultInterval if ≤ 0).
	Interval time.Duration
	// Keys are the hashes kept (keys.RuntimeConfig() if nil).
	Keys []string
	// Republish, if set, is called after a restart: it queues comsrv's
	// channels for the channel set again (and the channels' state; the sink
	// never drops either).
	Republish func()
}

// Keeper keeps the snapshot and restores from it. Run it once per process.
type Keeper struct {
	client rueidis.Client
	o      Options
	log    *slog.Logger
	warn   *logging.Limited
	dg     *digester

	written    *digest // content of the file, nil if unknown
	problemAt  *digest // content when the marker's problem was first seen
	tooLargeAt *digest // content last found too large to write

	confirmed string          // the Redis run the marker was last confirmed for
	lastFull  time.Time       // the last full read
	dirty     atomic.Bool     // a keyspace notification said the configuration changed
	notifying bool            // keyspace notifications are on in this Redis run
	watching  atomic.Bool     // the notification subscription is confirmed
	watchDB   int             // the database whose keyspace channels are subscribed; -1 before
	ctx       context.Context // Run's context, for the subscription; nil when only Tick is used
}

// New returns a Keeper of the configuration in client's Redis.
func New(client rueidis.Client, o Options, log *slog.Logger) *Keeper {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Keys == nil {
		o.Keys = keys.RuntimeConfig()
	}
	return &Keeper{client: client, o: o, log: log, warn: logging.NewLimited(log, time.Minute), dg: newDigester(), watchDB: -1}
}

// Run looks at Redis every interval until ctx ends. Errors (Redis down, a
// file that cannot be written) are logged and tried again.
func (k *Keeper) Run(ctx context.Context) {
	if k.o.Path != "" {
		switch s, err := Read(k.o.Path); {
		case err == nil:
			d := k.dg.of(s.Keys)
			k.written = &d
		case !errors.Is(err, fs.ErrNotExist):
			k.log.Error("configuration snapshot unusable; it is rewritten from Redis", "err", err)
		}
	}
	k.ctx = ctx
	t := time.NewTicker(k.o.Interval)
	defer t.Stop()
	for {
		if err := k.Tick(ctx); err != nil && ctx.Err() == nil {
			k.warn.Warn("configuration snapshot", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Tick does one round: restore after a restart, else snapshot a changed
// configuration.
func (k *Keeper) Tick(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	run, err := redisconn.RunID(ctx, k.client)
	if err != nil {
		return err
	}
	if run != k.confirmed {
		// A restarted Redis has forgotten the notification settings.
		k.notifying = k.notify(ctx) == nil
	} else if k.notifying && k.watching.Load() && !k.dirty.Load() && time.Since(k.lastFull) < FullReadInterval {
		return nil // nothing changed
	}
	k.dirty.Store(false) // a change during the read below marks it again
	if err := k.read(ctx, run); err != nil {
		k.dirty.Store(true)
		return err
	}
	k.lastFull = time.Now()
	return nil
}

// notify turns on the keyspace notifications the Keeper needs, keeping
// those already on.
func (k *Keeper) notify(ctx context.Context) error {
	m, err := k.client.Do(ctx, k.client.B().ConfigGet().Parameter("notify-keyspace-events").Build()).AsStrMap()
	if err != nil {
		return fmt.Errorf("keyspace notifications: %w", err)
	}
	cur := m["notify-keyspace-events"]
	want := cur
	for _, f := range notifyFlags {
		if !strings.ContainsRune(want, f) && !(f != 'K' && strings.ContainsRune(want, 'A')) {
			want += string(f)
		}
	}
	if want != cur {
		if err := k.client.Do(ctx, k.client.B().ConfigSet().ParameterValue().ParameterValue("notify-keyspace-events", want).Build()).Error(); err != nil {
			return fmt.Errorf("keyspace notifications: %w", err)
		}
	}
	return k.watch(ctx)
}

// watch subscribes, once, to the keyspace channels of the configuration
// keys in the client's database. Exact channels, not patterns: Redis
// matches every keyspace event of every key against each pattern
// subscribed, which would tax every HSET of the hot path.
func (k *Keeper) watch(ctx context.Context) error {
	if k.ctx == nil || k.watchDB >= 0 {
		return nil
	}
	info, err := k.client.Do(ctx, k.client.B().ClientInfo().Build()).ToString()
	if err != nil {
		return fmt.Errorf("client info: %w", err)
	}
	db := 0
	for _, f := range strings.Fields(info) {
		if v, ok := strings.CutPrefix(f, "db="); ok {
			db, _ = strconv.Atoi(v)
		}
	}
	k.watchDB = db
	channels := make([]string, 0, len(k.o.Keys))
	for _, key := range k.o.Keys {
		channels = append(channels, "__keyspace@"+strconv.Itoa(db)+"__:"+key)
	}
	go redisconn.Subscribe(k.ctx, k.client, func(b rueidis.Builder) rueidis.Completed {
		return b.Subscribe().Channel(channels...).Build()
	}, func(rueidis.PubSubMessage) { k.dirty.Store(true) }, redisconn.SubscribeOptions{
		Name: "configuration changes", Log: k.warn,
		// Its own connection: push messages must not interleave with the
		// transaction replies on the shared one.
		Dedicated: true,
		// Changes made while unsubscribed are caught by one full read.
		OnSubscribed: func() { k.dirty.Store(true); k.watching.Store(true) },
	})
	return nil
}

// read reads the marker and the configuration in one transaction, then
// restores after a restart or writes a changed configuration to the file.
func (k *Keeper) read(ctx context.Context, run string) error {
	b := k.client.B()
	cmds := make(rueidis.Commands, 0, len(k.o.Keys)+3)
	cmds = append(cmds, b.Multi().Build(), b.Hgetall().Key(keys.ConfigRestore).Build())
	for _, key := range k.o.Keys {
		cmds = append(cmds, b.Hgetall().Key(key).Build())
	}
	cmds = append(cmds, b.Exec().Build())
	res := k.client.DoMulti(ctx, cmds...)
	for _, r := range res {
		if err := r.Error(); err != nil {
			return fmt.Errorf("read configuration: %w", err)
		}
	}
	replies, err := res[len(res)-1].ToArray()
	if err != nil || len(replies) != len(k.o.Keys)+1 {
		return fmt.Errorf("read configuration: transaction reply: %v", err)
	}
	marker, err := replies[0].AsStrMap()
	if err != nil {
		return fmt.Errorf("read %s: %w", keys.ConfigRestore, err)
	}
	content := make(map[string]map[string]string, len(k.o.Keys))
	for i, key := range k.o.Keys {
		h, err := replies[i+1].AsStrMap()
		if err != nil {
			return fmt.Errorf("read %s: %w", key, err)
		}
		if len(h) > 0 {
			content[key] = h
		}
	}
	if marker[contract.RestoreRunID] != run {
		if err := k.restore(ctx, run, content); err != nil {
			return err
		}
		k.confirmed = run
		k.dirty.Store(true) // the next round writes the snapshot of what is now in Redis
		return nil
	}
	k.confirmed = run
	d := k.dg.of(content)
	if err := k.clearProblem(ctx, marker, d); err != nil {
		return err
	}
	if k.o.Path == "" || (k.written != nil && *k.written == d) {
		return nil
	}
	if k.tooLargeAt != nil && *k.tooLargeAt == d {
		return nil // reported once for this content
	}
	s := &Snapshot{WrittenAt: time.Now().UnixMilli(), RunID: run, Keys: content}
	if err := Write(k.o.Path, s); err != nil {
		if errors.Is(err, ErrTooLarge) {
			k.tooLargeAt = &d
			k.log.Error("configuration too large for its snapshot: not kept", "err", err)
			return nil
		}
		return err
	}
	k.written = &d
	k.log.Debug("configuration snapshot written", "path", k.o.Path, "entries", d.n)
	return nil
}

// clearProblem removes the marker's problem once the configuration has
// changed since it was first seen: someone has loaded it again.
func (k *Keeper) clearProblem(ctx context.Context, marker map[string]string, d digest) error {
	if marker[contract.RestoreProblem] == "" {
		k.problemAt = nil
		return nil
	}
	if k.problemAt == nil {
		k.problemAt = &d
		return nil
	}
	if *k.problemAt == d {
		return nil
	}
	if err := k.client.Do(ctx, k.client.B().Hdel().Key(keys.ConfigRestore).Field(contract.RestoreProblem).Build()).Error(); err != nil {
		return fmt.Errorf("clear the restore problem in %s: %w", keys.ConfigRestore, err)
	}
	k.problemAt = nil
	k.log.Info("run-time configuration changed since the failed restore: problem cleared")
	return nil
}

// restore puts the snapshot's keys that Redis lacks back, republishes the
// channel set and writes the marker for run. present is what Redis holds.
func (k *Keeper) restore(ctx context.Context, run string, present map[string]map[string]string) error {
	var snap *Snapshot
	problem := ""
	if k.o.Path != "" {
		var err error
		switch snap, err = Read(k.o.Path); {
		case errors.Is(err, fs.ErrNotExist):
			k.log.Info("no configuration snapshot yet: nothing to restore", "path", k.o.Path)
		case err != nil:
			missing := len(present) < len(k.o.Keys)
			k.log.Error("configuration snapshot unusable: nothing restored", "err", err, "keys_missing_in_redis", missing)
			if missing {
				problem = err.Error()
			}
			if errors.Is(err, ErrCorrupt) {
				bad := k.o.Path + ".corrupt"
				if rerr := os.Rename(k.o.Path, bad); rerr == nil {
					k.log.Warn("corrupt snapshot kept aside", "path", bad)
				}
			}
			k.written = nil
		}
	}
	var restored, kept []string
	if snap != nil {
		for _, key := range k.o.Keys {
			h := snap.Keys[key]
			if len(h) == 0 {
				continue
			}
			if len(present[key]) > 0 {
				kept = append(kept, key)
				continue
			}
			ok, err := k.restoreKey(ctx, key, h)
			if err != nil {
				return err
			}
			if ok {
				restored = append(restored, key)
			} else {
				kept = append(kept, key) // written meanwhile
			}
		}
	}
	if k.o.Republish != nil {
		k.o.Republish()
	}
	snapAt := int64(0)
	if snap != nil {
		snapAt = snap.WrittenAt
	}
	b := k.client.B()
	res := k.client.DoMulti(ctx,
		b.Multi().Build(),
		b.Del().Key(keys.ConfigRestore).Build(),
		b.Hset().Key(keys.ConfigRestore).FieldValue().
			FieldValue(contract.RestoreRunID, run).
			FieldValue(contract.RestoreAt, strconv.FormatInt(time.Now().UnixMilli(), 10)).
			FieldValue(contract.RestoreKeys, strings.Join(restored, ",")).
			FieldValue(contract.RestoreKept, strings.Join(kept, ",")).
			FieldValue(contract.RestoreSnapshotAt, strconv.FormatInt(snapAt, 10)).
			FieldValue(contract.RestoreProblem, problem).Build(),
		b.Exec().Build())
	for _, r := range res {
		if err := r.Error(); err != nil {
			return fmt.Errorf("write %s: %w", keys.ConfigRestore, err)
		}
	}
	k.problemAt = nil
	if problem != "" {
		d := k.dg.of(present) // cleared once the configuration differs from this
		k.problemAt = &d
	}
	k.log.Info("run-time configuration checked for this Redis run", "run_id", run,
		"restored", restored, "kept", kept, "snapshot_at", snapAt, "problem", problem)
	return nil
}

// restoreKey writes hash h to key unless key exists: it is built in a
// staging key and renamed with RENAMENX, in one transaction. It reports
// whether key was written.
func (k *Keeper) restoreKey(ctx context.Context, key string, h map[string]string) (bool, error) {
	b := k.client.B()
	tmp := keys.RestoreStaging(key)
	fields := slices.Sorted(maps.Keys(h))
	cmds := rueidis.Commands{b.Multi().Build(), b.Del().Key(tmp).Build()}
	for len(fields) > 0 {
		n := min(len(fields), restoreChunk)
		fv := b.Hset().Key(tmp).FieldValue()
		for _, f := range fields[:n] {
			fv = fv.FieldValue(f, h[f])
		}
		cmds = append(cmds, fv.Build())
		fields = fields[n:]
	}
	cmds = append(cmds, b.Renamenx().Key(tmp).Newkey(key).Build(), b.Del().Key(tmp).Build(), b.Exec().Build())
	res := k.client.DoMulti(ctx, cmds...)
	for _, r := range res {
		if err := r.Error(); err != nil {
			return false, fmt.Errorf("restore %s: %w", key, err)
		}
	}
	replies, err := res[len(res)-1].ToArray()
	if err != nil || len(replies) < 2 {
		return false, fmt.Errorf("restore %s: transaction reply: %v", key, err)
	}
	n, err := replies[len(replies)-2].AsInt64()
	if err != nil {
		return false, fmt.Errorf("restore %s: RENAMENX: %w", key, err)
	}
	return n == 1, nil
}
