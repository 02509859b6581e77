// Command dtusim simulates a fleet of DTUs for comsrv: each device dials the
// DTU server, sends its registration id and heartbeats, and speaks one of
// comsrv's DTU profiles (-profile): transparent (the default) answers Modbus
// RTU requests from a register map as a DTU with RS-485 slaves behind it
// would; line sends its id line as heartbeat, logs the lines it receives and
// may send data lines; tlv registers with a 4-byte id and exchanges
// [type][len][payload] frames, Modbus RTU inside type 0x04.
//
// Usage:
//
//	dtusim -addr 127.0.0.1:22334 -n 10000 -ramp 1000
//	dtusim -profile line -addr 127.0.0.1:22335 -prefix DEV -width 3 -start 1 -data temp=21.5
//	dtusim -profile tlv -addr 127.0.0.1:22336 -start 70001 -data-hex 0102
//
// With the defaults, devices register as DTU1001, DTU1002, ... followed by
// "\n", send "www.usr.cn" every 30s and serve the built-in register map
// (print it with -print-map; load another with -map FILE). Line devices send
// their id line every 500ms. Tlv device i registers with the id -start + i
// and sends a heartbeat frame every 30s.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/voltedge/voltedge/tools/dtusim/fleet"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "dtusim:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("dtusim", flag.ContinueOnError)
	var (
		addr         = fs.String("addr", "127.0.0.1:22334", "comsrv DTU server address")
		n            = fs.Int("n", 10, "number of devices")
		prefix       = fs.String("prefix", "DTU", "registration id prefix")
		start        = fs.Int("start", 1001, "number of the first device")
		width        = fs.Int("width", 0, "pad numbers with zeros to this many digits (0: no padding)")
		terminator   = fs.String("terminator", `\n`, `registration terminator: \n, \r\n, any Go escape, hex:0d0a, or "none" for fixed-length ids`)
		heartbeat    = fs.String("heartbeat", "www.usr.cn", "heartbeat text (empty: no heartbeat)")
		heartbeatHex = fs.String("heartbeat-hex", "", "heartbeat as hex; overrides -heartbeat")
		hbInterval   = fs.Duration("heartbeat-interval", 30*time.Second, "heartbeat interval (line profile: 500ms unless set; 0: no heartbeats)")
		mapFile      = fs.String("map", "", "register map TOML file (default: the built-in map)")
		printMap     = fs.Bool("print-map", false, "print the built-in register map and exit")
		slaves       = fs.String("slaves", "", "comma-separated slave ids (default: the map's, else 1)")
		perDevice    = fs.Bool("per-device-map", false, "give each device its own copy of the map, so writes stay local")
		ramp         = fs.Float64("ramp", 1000, "new connections per second")
		backoffMin   = fs.Duration("backoff-min", time.Second, "shortest delay before reconnecting")
		backoffMax   = fs.Duration("backoff-max", 5*time.Second, "longest delay before reconnecting")
		statsEvery   = fs.Duration("stats", 10*time.Second, "log statistics at this interval (0: only at exit)")
		delay        = fs.Duration("delay", 0, "response delay of the slaves")
		dropEvery    = fs.Int("drop-every", 0, "leave every Nth request unanswered (0: never)")
		corruptEvery = fs.Int("corrupt-every", 0, "send every Nth response with a bad CRC (0: never)")
		glue         = fs.Bool("glue", false, "send a heartbeat (tlv: a heartbeat frame) in the same write as every response, alternately before and after")
		split        = fs.Bool("split", false, "write responses, data lines and data frames in 2-3 pieces with short pauses")
		duration     = fs.Duration("duration", 0, "run this long (0: until SIGINT or SIGTERM)")
		logLevel     = fs.String("log-level", "info", "debug, info, warn or error")
		profile      = fs.String("profile", fleet.ProfileTransparent, "DTU profile: transparent, line or tlv")
		dataInterval = fs.Duration("data-interval", fleet.DefaultDataInterval, "interval of data lines (line) or data frames (tlv)")
		ackTimeout   = fs.Duration("ack-timeout", fleet.DefaultAckTimeout, "tlv: how long to wait for the registration ack")
		maxLine      = fs.Int("max-line", fleet.DefaultMaxLineLength, "line: longest received line kept, in bytes")
		data         [][]byte
	)
	fs.Func("data", "line: a data line; tlv: a data frame payload as text. Repeat for several, sent in turn", func(s string) error {
		data = append(data, []byte(s))
		return nil
	})
	fs.Func("data-hex", "tlv: a data frame payload as hex. Repeat for several", func(s string) error {
		b, err := hex.DecodeString(s)
		if err != nil {
			return err
		}
		data = append(data, b)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := checkProfileFlags(*profile, set); err != nil {
		return err
	}
	if *printMap {
		fmt.Print(fleet.DefaultMapTOML)
		return nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	cfg := fleet.FleetConfig{
		N: *n, Prefix: *prefix, Start: *start, Width: *width,
		Ramp: *ramp, BackoffMin: *backoffMin, BackoffMax: *backoffMax,
		PerDeviceMap: *perDevice, Stats: new(fleet.Stats), Logger: log,
		Device: fleet.DeviceConfig{
			Addr: *addr, Profile: *profile, HeartbeatInterval: *hbInterval, ResponseDelay: *delay,
			DropEvery: *dropEvery, CorruptEvery: *corruptEvery, GlueHeartbeat: *glue, SplitWrites: *split,
			DataInterval: *dataInterval, AckTimeout: *ackTimeout, MaxLineLength: *maxLine,
		},
	}
	if *maxLine < 1 {
		return fmt.Errorf("-max-line %d: at least 1", *maxLine)
	}
	switch *profile {
	case fleet.ProfileLine:
		if !set["heartbeat-interval"] {
			cfg.Device.HeartbeatInterval = fleet.DefaultLineHeartbeat
		}
		for _, d := range data {
			cfg.Device.DataLines = append(cfg.Device.DataLines, string(d))
		}
	case fleet.ProfileTLV:
		cfg.Device.DataFrames = data
	}
	cfg.Device.NoHeartbeat = cfg.Device.HeartbeatInterval == 0
	var err error
	if cfg.Terminator, cfg.Fixed, err = parseTerminator(*terminator); err != nil {
		return fmt.Errorf("-terminator: %w", err)
	}
	cfg.Device.Heartbeat = []byte(*heartbeat)
	if *heartbeatHex != "" {
		if cfg.Device.Heartbeat, err = hex.DecodeString(*heartbeatHex); err != nil {
			return fmt.Errorf("-heartbeat-hex: %w", err)
		}
	}
	if *profile != fleet.ProfileTransparent {
		cfg.Device.Heartbeat = nil // line and tlv devices have their own heartbeat packets
	}
	if *mapFile != "" {
		if cfg.Device.Map, err = fleet.LoadMap(*mapFile); err != nil {
			return err
		}
	} else {
		cfg.Device.Map = fleet.DefaultMap()
	}
	cfg.Device.Slaves = cfg.Device.Map.Slaves()
	if *slaves != "" {
		if cfg.Device.Slaves, err = parseSlaves(*slaves); err != nil {
			return fmt.Errorf("-slaves: %w", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	log.Info("dtusim starting", "addr", *addr, "profile", *profile, "devices", *n,
		"first_id", cfg.DeviceName(0), "slaves", fmt.Sprint(cfg.Device.Slaves),
		"heartbeat", string(cfg.Device.Heartbeat), "heartbeat_interval", cfg.Device.HeartbeatInterval, "ramp", *ramp)
	statsDone := make(chan struct{})
	go func() {
		defer close(statsDone)
		logStats(ctx, log, cfg.Stats, *statsEvery)
	}()
	if err := fleet.RunFleet(ctx, cfg); err != nil {
		return err
	}
	<-statsDone
	log.Info("dtusim stopped", attrsAny(cfg.Stats.Snapshot().Attrs())...)
	return nil
}

// checkProfileFlags rejects an unknown profile and flags set that it does not use.
func checkProfileFlags(profile string, set map[string]bool) error {
	var unused []string
	switch profile {
	case fleet.ProfileTransparent:
		unused = []string{"data", "data-hex", "data-interval", "ack-timeout", "max-line"}
	case fleet.ProfileLine:
		unused = []string{"heartbeat", "heartbeat-hex", "glue", "delay", "drop-every", "corrupt-every",
			"slaves", "map", "per-device-map", "data-hex", "ack-timeout"}
	case fleet.ProfileTLV:
		unused = []string{"prefix", "width", "terminator", "heartbeat", "heartbeat-hex", "max-line"}
	default:
		return fmt.Errorf("-profile %q: transparent, line or tlv", profile)
	}
	for _, name := range unused {
		if set[name] {
			return fmt.Errorf("-%s is not used by the %s profile", name, profile)
		}
	}
	return nil
}

// logStats logs the counters and request rate every interval until ctx is done.
func logStats(ctx context.Context, log *slog.Logger, st *fleet.Stats, every time.Duration) {
	if every <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	prev, last := st.Snapshot(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cur := st.Snapshot()
			secs := now.Sub(last).Seconds()
			attrs := append(attrsAny(cur.Attrs()),
				slog.Float64("requests_per_s", float64(cur.Requests-prev.Requests)/secs),
				slog.Float64("bytes_out_per_s", float64(cur.BytesOut-prev.BytesOut)/secs))
			log.Info("stats", attrs...)
			prev, last = cur, now
		}
	}
}

func attrsAny(attrs []slog.Attr) []any {
	out := make([]any, len(attrs))
	for i, a := range attrs {
		out[i] = a
	}
	return out
}

// parseTerminator reads -terminator: "none" or "" for fixed-length ids,
// "hex:..." for raw bytes, otherwise text with Go escapes (\n, \r\n, \x00).
func parseTerminator(s string) (term []byte, fixed bool, err error) {
	switch {
	case s == "" || strings.EqualFold(s, "none"):
		return nil, true, nil
	case strings.HasPrefix(s, "hex:"):
		b, err := hex.DecodeString(s[len("hex:"):])
		if err != nil {
			return nil, false, err
		}
		if len(b) == 0 {
			return nil, true, nil
		}
		return b, false, nil
	}
	if u, uerr := strconv.Unquote(`"` + s + `"`); uerr == nil {
		return []byte(u), false, nil
	}
	return []byte(s), false, nil // not a valid escape sequence: the text as it is
}

// parseSlaves reads a comma-separated list of slave ids 1..247.
func parseSlaves(s string) ([]uint8, error) {
	var out []uint8
	for f := range strings.SplitSeq(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 || v > 247 {
			return nil, fmt.Errorf("slave id %q is not in 1..247", f)
		}
		out = append(out, uint8(v))
	}
	return out, nil
}
