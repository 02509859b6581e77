// Package fleet simulates DTUs (serial-to-TCP data terminal units) for
// comsrv: each device dials the DTU server, sends its registration packet,
// sends heartbeats, and speaks one of comsrv's DTU profiles:
//
//   - transparent: behind the DTU are one or more Modbus RTU slaves
//     answering raw RTU frames on the socket, as a DTU relaying an RS-485
//     bus does. Requests may arrive split or merged; garbage is skipped.
//   - line: the id is an ASCII line, resent as heartbeat; the device records
//     the lines the server sends (LineLog, OnLine) and may send data lines.
//   - tlv: a 4-byte id acknowledged by 0x01, then [type][len][payload]
//     frames: heartbeats and data frames acknowledged by the server, and
//     Modbus RTU requests and responses wrapped in TLVModbus frames.
//
// A device runs on one goroutine (RunDevice) with a 512-byte read buffer and
// no timers of its own beyond socket deadlines, so one process holds ten
// thousand devices. RunFleet starts many of them at a bounded rate and
// reconnects them after a random back-off. The slaves' memory is a
// RegisterMap, loadable from a TOML file (see DefaultMapTOML).
package fleet

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FleetConfig describes a fleet of devices.
type FleetConfig struct {
	// N is the number of devices.
	N int
	// Registration ids are Prefix + the number Start+i, padded with zeros to
	// Width digits (0: no padding), followed by Terminator ("\n" when nil).
	// With Fixed set no terminator is sent and all ids must have the same
	// length (comsrv's fixed-length registration mode). Line devices need a
	// terminator ending in "\n". A tlv device i registers with Start+i as 4
	// bytes big-endian; Prefix, Width, Terminator and Fixed are not used.
	Prefix     string
	Start      int
	Width      int
	Terminator []byte
	Fixed      bool
	// IDFunc, when set, returns the whole registration packet of device i
	// (0-based) instead of the above.
	IDFunc func(i int) []byte
	// Device is the template of every device; its Profile is the fleet's.
	// Addr, Heartbeat, Map, the data and the fault options are used as given;
	// ID (and TLVID) are set per device. A nil Map is DefaultMap().
	Device DeviceConfig
	// PerDeviceMap gives each device its own copy of the map, so that writes
	// to one device do not show on the others.
	PerDeviceMap bool
	// Ramp is how many devices connect per second at the start (default 1000).
	Ramp float64
	// BackoffMin and BackoffMax bound the random delay before a device
	// reconnects after its connection failed (defaults 1s and 5s).
	BackoffMin, BackoffMax time.Duration
	// Stats receives the counters of all devices; may be nil.
	Stats *Stats
	// Logger logs connection failures at debug level; nil discards them.
	Logger *slog.Logger
}

// DeviceName is the registration id of device i (0-based) without
// terminator; for tlv devices the decimal id.
func (c *FleetConfig) DeviceName(i int) string {
	num := strconv.Itoa(c.Start + i)
	if c.Device.Profile == ProfileTLV {
		return num
	}
	if pad := c.Width - len(num); pad > 0 {
		num = strings.Repeat("0", pad) + num
	}
	return c.Prefix + num
}

// Registration is the registration packet of device i (0-based), terminator included.
func (c *FleetConfig) Registration(i int) []byte {
	if c.IDFunc != nil {
		return c.IDFunc(i)
	}
	if c.Device.Profile == ProfileTLV {
		return binary.BigEndian.AppendUint32(make([]byte, 0, 4), uint32(c.Start+i))
	}
	id := []byte(c.DeviceName(i))
	switch {
	case c.Fixed:
		return id
	case c.Terminator == nil:
		return append(id, '\n')
	default:
		return append(id, c.Terminator...)
	}
}

func (c *FleetConfig) check() error {
	if c.N < 0 {
		return fmt.Errorf("fleet: negative device count %d", c.N)
	}
	if c.Ramp < 0 || c.BackoffMin < 0 || c.BackoffMax < 0 {
		return errors.New("fleet: negative ramp or back-off")
	}
	prof, err := parseProfile(c.Device.Profile)
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	if c.N > 0 && c.IDFunc == nil {
		if c.Start < 0 || c.Width < 0 {
			return errors.New("fleet: negative start number or width")
		}
		switch prof {
		case tlvProfile:
			if last := int64(c.Start) + int64(c.N) - 1; last > math.MaxUint32 {
				return fmt.Errorf("fleet: tlv id %d does not fit in 4 bytes", last)
			}
			return nil
		case lineProfile:
			if c.Fixed || (c.Terminator != nil && !bytes.HasSuffix(c.Terminator, []byte("\n"))) {
				return errors.New(`fleet: a line device's id is one line: not fixed-length, the terminator must end in "\n"`)
			}
			if strings.ContainsAny(c.Prefix, "\r\n") {
				return errors.New("fleet: a line device's id prefix contains a line break")
			}
		}
		if c.Fixed && len(c.DeviceName(0)) != len(c.DeviceName(c.N-1)) {
			return fmt.Errorf("fleet: fixed-length ids differ in length (%q, %q): set a width",
				c.DeviceName(0), c.DeviceName(c.N-1))
		}
		if !c.Fixed && len(c.Terminator) > 0 && bytes.Contains([]byte(c.Prefix), c.Terminator) {
			return errors.New("fleet: the id prefix contains the terminator")
		}
	}
	return nil
}

// RunFleet runs cfg.N devices until ctx is done, then waits for all of them
// to close and returns nil. It returns an error only for a bad configuration.
func RunFleet(ctx context.Context, cfg FleetConfig) error {
	if err := cfg.check(); err != nil {
		return err
	}
	if cfg.Device.Map == nil {
		cfg.Device.Map = DefaultMap()
	}
	probe := cfg.Device
	probe.ID = []byte{'\n'}
	if err := probe.check(); err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	if cfg.Ramp == 0 {
		cfg.Ramp = 1000
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = time.Second
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 5 * time.Second
	}
	cfg.BackoffMax = max(cfg.BackoffMax, cfg.BackoffMin)
	st := cfg.Stats
	if st == nil {
		st = new(Stats)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	begin := time.Now()
	for i := range cfg.N {
		if wait := time.Until(begin.Add(time.Duration(float64(i) / cfg.Ramp * float64(time.Second)))); wait > time.Millisecond {
			if !sleep(ctx, wait) {
				break
			}
		}
		if ctx.Err() != nil {
			break
		}
		dc := cfg.Device
		dc.ID = cfg.Registration(i)
		name := cfg.DeviceName(i)
		if cfg.IDFunc != nil {
			name = fmt.Sprintf("%q", bytes.TrimRight(dc.ID, "\r\n"))
		} else if dc.Profile == ProfileTLV {
			dc.TLVID = uint32(cfg.Start + i)
		}
		if cfg.PerDeviceMap {
			dc.Map = cfg.Device.Map.Clone()
		}
		if dc.Profile == ProfileLine && dc.OnLine == nil && log.Enabled(ctx, slog.LevelDebug) {
			dc.OnLine = func(line string) { log.Debug("line received", "id", name, "line", line) }
		}
		wg.Go(func() { runDevice(ctx, &cfg, name, dc, st, log) })
	}
	return nil
}

// runDevice keeps one device connected until ctx is done.
func runDevice(ctx context.Context, cfg *FleetConfig, name string, dc DeviceConfig, st *Stats, log *slog.Logger) {
	for {
		err := RunDevice(ctx, dc, st)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			st.setError(err)
			log.Debug("device disconnected", "id", name, "err", err)
		}
		st.Reconnects.Add(1)
		backoff := cfg.BackoffMin
		if span := cfg.BackoffMax - cfg.BackoffMin; span > 0 {
			backoff += rand.N(span)
		}
		if !sleep(ctx, backoff) {
			return
		}
	}
}

// sleep waits for d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
