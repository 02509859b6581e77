// Command comsrv is VoltEdge's communication service: it runs the DTU TCP
// server, polls the Modbus devices behind each link and writes their values
// into Redis through the Lua library.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/control"
	"github.com/voltedge/voltedge/comsrv/directory"
	"github.com/voltedge/voltedge/comsrv/dtu"
	"github.com/voltedge/voltedge/comsrv/modbus"
	"github.com/voltedge/voltedge/comsrv/sink"
	"github.com/voltedge/voltedge/comsrv/snapshot"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/metrics"
	"github.com/voltedge/voltedge/internal/svc"
)

// defaultMemoryLimit is the Go runtime's soft memory limit unless GOMEMLIMIT
// is set. The edge plan budgets 256 MB for comsrv.
const defaultMemoryLimit = 128 << 20

// redisConnections is the size of comsrv's Redis connection pool.
const redisConnections = 2

func main() {
	var pprofAddr, snapshotPath string
	svc.Run(svc.Service[config.Config]{
		Name: "comsrv",
		Load: config.Load,
		Settings: func(c *config.Config) svc.Settings {
			// serve exposes its own counters on metrics_listen.
			return svc.Settings{RedisURL: &c.RedisURL, LogFile: c.LogFile, LogLevel: c.LogLevel}
		},
		Summary: func(c *config.Config) string {
			return fmt.Sprintf("%d templates, %d channels", len(c.TemplateByID), len(c.ChannelList))
		},
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&pprofAddr, "pprof", "", "serve net/http/pprof on this loopback address (e.g. 127.0.0.1:6060); off by default")
			fs.StringVar(&snapshotPath, "snapshot", "", "configuration snapshot file, overriding [snapshot] path")
		},
		RedisConnections: redisConnections,
		MemoryLimit:      defaultMemoryLimit,
		Serve: func(ctx context.Context, env *svc.Env[config.Config]) error {
			if pprofAddr != "" {
				go servePprof(pprofAddr)
			}
			if snapshotPath != "" {
				env.Config.Snapshot.Path = snapshotPath
			}
			return serve(ctx, env.Config, env.Log, env.Redis)
		},
	})
}

// serve runs comsrv until ctx is cancelled.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, client rueidis.Client) error {

	var srv *dtu.Server
	var mset *modbus.Set
	sk := sink.New(client, lualib.NewCaller(client, log), sink.Options{
		Writers:       cfg.Redis.Writers,
		BatchPoints:   cfg.Redis.BatchPoints,
		FlushInterval: cfg.Redis.FlushInterval.Duration,
		EventsMaxLen:  cfg.Events.MaxLen,
	}, log, func() map[string]int64 {
		return map[string]int64{
			"connections":     srv.Connections(),
			"online":          int64(srv.Online()),
			"modbus_channels": int64(mset.Count()),
			"modbus_online":   int64(mset.Online()),
		}
	})
	disp := control.NewDispatcher(client, control.Options{
		StartupGrace:  cfg.Control.StartupGrace.Duration,
		SweepInterval: cfg.Control.SweepInterval.Duration,
		ResultTTL:     cfg.Control.ResultTTL.Duration,
		ResultsMaxLen: cfg.Control.ResultsMaxLen,
	}, log)
	dir, err := directory.New(cfg, sk, log)
	if err != nil {
		return err
	}
	srv, err = dtu.New(cfg, sk, log, dtu.WithDirectory(dir), dtu.WithControls(disp), dtu.WithRedis(client))
	if err != nil {
		return err
	}
	mset = modbus.NewSet(cfg, sk, disp, disp, log)
	keeper := snapshot.New(client, snapshot.Options{Path: cfg.Snapshot.Path, Interval: cfg.Snapshot.Interval.Duration, Republish: func() { dir.Republish(); sk.Resync() }}, log)
	kctx, stopKeeper := context.WithCancel(ctx)
	kdone := make(chan struct{})
	go func() { defer close(kdone); keeper.Run(kctx) }()
	defer func() {
		stopKeeper()
		<-kdone
	}()

	// The sink outlives the links (they write their offline status last);
	// the dispatcher outlives them too, to record their last outcomes.
	bgCtx, stopBg := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); sk.Run(bgCtx) }()
	go func() { defer bg.Done(); disp.Run(bgCtx) }()
	defer func() {
		stopBg()
		bg.Wait()
	}()

	if _, _, _, err := mset.Sync(ctx, cfg.ChannelList); err != nil {
		return err
	}
	defer mset.Stop()
	r := &reloader{cfg: cfg, client: client, dtu: srv, modbus: mset, log: log}
	go r.run(ctx)
	if cfg.MetricsListen != "" {
		reg := comsrvMetrics(client, sk, disp, srv, mset)
		go func() {
			if err := metrics.Serve(ctx, cfg.MetricsListen, reg, nil); err != nil {
				log.Error("metrics endpoint failed", "addr", cfg.MetricsListen, "err", err)
			}
		}()
	}

	log.Info("comsrv starting", "channels", len(cfg.ChannelList), "templates", len(cfg.TemplateByID), "listeners", len(cfg.AllListeners()), "redis", cfg.RedisURL, "snapshot", cfg.Snapshot.Path)
	return srv.ListenAndServe(ctx)
}

// comsrvMetrics exposes comsrv's counters and gauges for /metrics.
func comsrvMetrics(client rueidis.Client, sk *sink.Sink, disp *control.Dispatcher, srv *dtu.Server, mset *modbus.Set) *metrics.Registry {
	reg := svc.BaseMetrics("comsrv", client, time.Now())
	counter := func(name, help string, f func(sink.Stats) uint64) {
		reg.CounterFunc(name, help, func() float64 { return float64(f(sk.Stats())) })
	}
	counter("comsrv_responses_total", "Poll responses written to Redis.", func(s sink.Stats) uint64 { return s.Responses })
	counter("comsrv_points_total", "Point values written to Redis.", func(s sink.Stats) uint64 { return s.Points })
	counter("comsrv_dropped_total", "Responses and commands dropped because Redis could not keep up.", func(s sink.Stats) uint64 { return s.Dropped })
	counter("comsrv_redis_failures_total", "Failed Redis writes.", func(s sink.Stats) uint64 { return s.Failures })
	counter("comsrv_alarm_events_total", "Alarm raise and clear events.", func(s sink.Stats) uint64 { return s.AlarmEvents })
	reg.GaugeFunc("comsrv_connections", "Open DTU sockets, registered or not.", func() float64 { return float64(srv.Connections()) })
	reg.GaugeFunc("comsrv_dtu_online", "Registered DTU links.", func() float64 { return float64(srv.Online()) })
	reg.GaugeFunc("comsrv_modbus_channels", "Modbus TCP and serial channels.", func() float64 { return float64(mset.Count()) })
	reg.GaugeFunc("comsrv_modbus_online", "Modbus channels connected.", func() float64 { return float64(mset.Online()) })
	reg.CounterFunc("comsrv_controls_delivered_total", "Control commands handed to a link.", func() float64 { return float64(disp.Stats().Delivered) })
	reg.CounterFunc("comsrv_controls_reported_total", "Control outcomes written to Redis.", func() float64 { return float64(disp.Stats().Reported) })
	return reg
}
