package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/dtu"
	"github.com/voltedge/voltedge/comsrv/modbus"
	"github.com/voltedge/voltedge/comsrv/poll"
	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redisconn"
)

// reloader re-reads the channel and template files on SIGHUP and on a
// request published on keys.Reload, and applies them without dropping the
// links of untouched channels. A configuration with errors is refused and
// the running one kept.
type reloader struct {
	mu     sync.Mutex
	cfg    *config.Config // the configuration in use
	client rueidis.Client
	dtu    *dtu.Server
	modbus *modbus.Set
	log    *slog.Logger
}

// maxReloadID bounds the request id echoed in the reply.
const maxReloadID = 64

func (r *reloader) run(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// Requests arrive from the subscription, whose handler must not block
	// (it runs on the connection's reader): it only queues the id here.
	requests := make(chan string, maxPendingReloads)
	go r.listen(ctx, requests)
	for {
		var ids []string
		select {
		case <-ctx.Done():
			return
		case <-hup:
			ids = append(ids, "SIGHUP")
		case id := <-requests:
			ids = append(ids, id)
		}
		// Requests that piled up meanwhile are answered by the same reload.
	more:
		for len(ids) < maxPendingReloads {
			select {
			case id := <-requests:
				ids = append(ids, id)
			default:
				break more
			}
		}
		rep := r.reload(ctx)
		for _, id := range ids {
			rep.ID = id
			r.publish(ctx, rep)
		}
	}
}

// maxPendingReloads bounds the reload requests waiting; more are dropped (and logged).
const maxPendingReloads = 256

// listen queues reload requests from keys.Reload, resubscribing after errors.
func (r *reloader) listen(ctx context.Context, requests chan<- string) {
	redisconn.Subscribe(ctx, r.client, func(b rueidis.Builder) rueidis.Completed {
		return b.Subscribe().Channel(keys.Reload).Build()
	}, func(m rueidis.PubSubMessage) {
		id := m.Message
		if len(id) > maxReloadID {
			id = id[:maxReloadID]
		}
		select {
		case requests <- id:
		default:
			r.log.Warn("reload request dropped: too many waiting", "id", id)
		}
	}, redisconn.SubscribeOptions{Name: "reload " + keys.Reload, Log: r.log, Backoff: redisconn.Backoff{Max: 10 * time.Second}})
}

func (r *reloader) publish(ctx context.Context, rep contract.ReloadReply) {
	b, _ := json.Marshal(rep)
	if err := r.client.Do(ctx, r.client.B().Publish().Channel(keys.ReloadResult).Message(string(b)).Build()).Error(); err != nil {
		r.log.Warn("publish reload result", "channel", keys.ReloadResult, "err", err)
	}
}

// reload loads the configuration file again and applies its channels and templates.
func (r *reloader) reload(ctx context.Context) contract.ReloadReply {
	r.mu.Lock()
	defer r.mu.Unlock()
	next, err := config.Load(r.cfg.File)
	if err != nil {
		r.log.Error("reload refused: the configuration has errors; the running one is kept", "file", r.cfg.File, "err", err)
		return contract.ReloadReply{OK: false, Message: err.Error()}
	}
	// Every plan must compile before anything is applied: a reload is all or nothing.
	if err := compileAll(next.ChannelList); err != nil {
		r.log.Error("reload refused; the running configuration is kept", "err", err)
		return contract.ReloadReply{OK: false, Message: err.Error()}
	}
	var rep contract.ReloadReply
	a, c, d, err := r.dtu.Reload(next.ChannelList, next.TemplateByID)
	if err != nil {
		r.log.Error("reload refused", "err", err)
		return contract.ReloadReply{OK: false, Message: err.Error()}
	}
	rep.Added, rep.Changed, rep.Removed = a, c, d
	a, c, d, err = r.modbus.Sync(ctx, next.ChannelList)
	rep.Added, rep.Changed, rep.Removed = rep.Added+a, rep.Changed+c, rep.Removed+d
	if err != nil {
		rep.Message = "modbus channels: " + err.Error()
	}
	if notes := restartNeeded(r.cfg, next); len(notes) > 0 {
		msg := "changed settings need a restart to apply: " + strings.Join(notes, ", ")
		rep.Message = strings.TrimPrefix(rep.Message+"; "+msg, "; ")
		r.log.Warn("reload: " + msg)
	}
	// Server settings stay as they were; channels and templates are the new ones.
	kept := *r.cfg
	kept.TemplateByID, kept.ChannelList = next.TemplateByID, next.ChannelList
	r.cfg = &kept
	rep.OK = true
	r.log.Info("configuration reloaded", "added", rep.Added, "changed", rep.Changed, "removed", rep.Removed)
	return rep
}

// restartNeeded names the sections of comsrv.toml that differ; a reload applies only channels and templates.
func restartNeeded(old, next *config.Config) []string {
	var out []string
	check := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, name)
		}
	}
	check("redis_url", old.RedisURL, next.RedisURL)
	check("[dtu]", old.DTU, next.DTU)
	check("[[listener]]", old.Listeners, next.Listeners)
	check("[modbus]", old.Modbus, next.Modbus)
	check("[redis]", old.Redis, next.Redis)
	check("[control]", old.Control, next.Control)
	check("[frames]", old.Frames, next.Frames)
	check("[events]", old.Events, next.Events)
	return out
}

// compileAll compiles the plan of every channel.
func compileAll(list []*config.Channel) error {
	cache := poll.NewCache()
	for _, ch := range list {
		if _, err := cache.For(ch); err != nil {
			return err
		}
	}
	return nil
}
