// Package config loads comsrv's configuration: the server file (listen
// address, Redis, timeouts, limits, log) and the data definitions it points
// to (device templates and channel lists), each in its own TOML files.
package config

import (
	"net/netip"
	"reflect"
	"regexp"

	"github.com/voltedge/voltedge/internal/conf"
)

// Config is comsrv.toml plus the templates and channels it references, resolved and validated.
type Config struct {
	// RedisURL is the Redis to write to, e.g. "redis://127.0.0.1:6379/0".
	RedisURL string `toml:"redis_url"`
	// LogFile is where logs go; empty means standard error.
	LogFile string `toml:"log_file"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	// MetricsListen is where /metrics (Prometheus text) is served; default ":9101", "" disables it.
	MetricsListen string `toml:"metrics_listen"`
	// Templates and Channels are glob patterns, relative to the directory of comsrv.toml.
	Templates []string `toml:"templates"`
	Channels  []string `toml:"channels"`

	DTU DTU `toml:"dtu"`
	// Listeners are further DTU servers, each on its own address and usually
	// with another profile ([[listener]]); [dtu] is always the first.
	Listeners []DTU   `toml:"listener"`
	Modbus    Modbus  `toml:"modbus"`
	Redis     Redis   `toml:"redis"`
	Control   Control `toml:"control"`
	Frames    Frames  `toml:"frames"`
	Events    Events  `toml:"events"`
	// Snapshot is where the run-time configuration is kept on disk for a
	// Redis that restarted without its data.
	Snapshot Snapshot `toml:"snapshot"`

	// Resolved after loading.
	File         string               `toml:"-"` // path of comsrv.toml
	TemplateByID map[string]*Template `toml:"-"`
	ChannelList  []*Channel           `toml:"-"` // sorted by ID, ranges expanded

	pos *conf.Positions // where comsrv.toml's keys are, for errors found after Load
}

// DTU configures a TCP server that DTUs connect in to.
type DTU struct {
	Name           string `toml:"name"`            // listener name for logs and events; "dtu" for [dtu]
	Profile        string `toml:"profile"`         // "transparent" (default), "line" or "tlv"
	Listen         string `toml:"listen"`          // default ":22334"
	MaxConnections int    `toml:"max_connections"` // registered links, default 12000; a registration beyond it is refused
	// MaxUnregistered bounds the sockets that have not registered yet (their
	// own pool, apart from MaxConnections); default max_connections/10 within 64..1000.
	MaxUnregistered int `toml:"max_unregistered"`
	// MaxUnregisteredPerIP bounds the unregistered sockets of one source
	// address; default 20, 0 means no bound.
	MaxUnregisteredPerIP int `toml:"max_unregistered_per_ip"`
	// Allow lists the source networks (CIDRs) that may connect; empty allows any.
	Allow []string `toml:"allow"`
	// Replace is what a new connection with the id of a link that is up
	// does: "always" (default) replaces it, "if-silent" only when the old
	// link received nothing for ReplaceAfter, "never" is refused.
	Replace      string        `toml:"replace"`
	ReplaceAfter conf.Duration `toml:"replace_after"` // if-silent: default 60s
	// Secret is sent by every DTU of the listener with its id, before it
	// (SecretPosition "prefix") or after it ("suffix", default).
	Secret              string        `toml:"secret"`
	SecretPosition      string        `toml:"secret_position"`
	RegistrationTimeout conf.Duration `toml:"registration_timeout"` // default 10s
	WriteTimeout        conf.Duration `toml:"write_timeout"`        // default 5s
	RefuseLogInterval   conf.Duration `toml:"refuse_log_interval"`  // default 10s: refusals are logged once per interval with a count
	StatusInterval      conf.Duration `toml:"status_interval"`      // default 5s: how often each channel's status hash is refreshed
	UnknownIDs          string        `toml:"unknown_ids"`          // "refuse" (default) or "provision"
	ProvisionTemplate   string        `toml:"provision_template"`   // template for provisioned ids; channel id = registration id
	Registration        Registration  `toml:"registration"`         // transparent profile only
	Heartbeat           Heartbeat     `toml:"heartbeat"`
	Line                Line          `toml:"line"` // line profile only

	AllowNets []netip.Prefix `toml:"-"` // Allow, parsed
}

// Line configures the line profile: devices send their id as an ASCII line
// as registration and heartbeat, and comsrv forwards the messages of a Redis
// pub/sub channel to them.
type Line struct {
	ResultChannel string `toml:"result_channel"`  // pub/sub channel of "command,device_id,data" messages; default "result"
	MaxLineLength int    `toml:"max_line_length"` // bytes per line without the newline, default 256 (16..4096)
}

// Registration describes the registration packet a DTU sends first.
type Registration struct {
	Mode          string `toml:"mode"`           // "terminator" (default) or "fixed"
	Length        int    `toml:"length"`         // fixed mode: exact length in bytes (1..256)
	Terminator    string `toml:"terminator"`     // terminator mode, as text (default "\n"); a trailing "\r" is also removed
	TerminatorHex string `toml:"terminator_hex"` // or as hex, e.g. "0d0a"
	MaxLength     int    `toml:"max_length"`     // terminator mode: bytes before the terminator (default 64, at most 256)
	Encoding      string `toml:"encoding"`       // how the id is rendered: "text" (default), "hex" or "decimal" (big-endian unsigned, ≤ 8 bytes)
	Pattern       string `toml:"pattern"`        // the rendered id must match; default ^[A-Za-z0-9_.-]{1,64}$

	TerminatorBytes []byte         `toml:"-"`
	Regexp          *regexp.Regexp `toml:"-"`
}

// Heartbeat describes the heartbeat packet a DTU sends while connected.
type Heartbeat struct {
	Text    string        `toml:"text"`    // exact bytes as text (default "www.usr.cn")
	Hex     string        `toml:"hex"`     // or as hex; exactly one of text/hex is used
	Timeout conf.Duration `toml:"timeout"` // no heartbeat within timeout × max_missed → offline, socket closed; default 90s (line 1s, tlv 60s); "0s" disables
	// MaxMissed is how many heartbeat periods may pass without one; default 1 (tlv 3).
	MaxMissed int `toml:"max_missed"`

	Bytes []byte `toml:"-"`
}

// Modbus configures the RTU master that polls through each DTU link.
type Modbus struct {
	RequestTimeout conf.Duration `toml:"request_timeout"` // default 1s
	Retries        int           `toml:"retries"`         // extra attempts after a timeout or CRC error, default 1 (0..5)
	FlushDelay     conf.Duration `toml:"flush_delay"`     // after a timeout, bytes arriving within this quiet time are discarded before the next request; default 50ms
	// BackoffAfter consecutive timeouts of one slave make comsrv skip that
	// slave for BackoffCooldown; its values are marked stale. Default 3 (1..100).
	BackoffAfter    int           `toml:"backoff_after"`
	BackoffCooldown conf.Duration `toml:"backoff_cooldown"` // default 30s
	// ReconnectMin and ReconnectMax bound the back-off between connection
	// attempts of Modbus TCP and serial channels (doubling from min to max); defaults 1s and 60s.
	ReconnectMin conf.Duration `toml:"reconnect_min"`
	ReconnectMax conf.Duration `toml:"reconnect_max"`
	// StatusInterval is how often the status hash of a Modbus TCP or serial
	// channel (one with url) is refreshed; default 5s, like dtu.status_interval.
	// Load copies it into each url channel's Channel.StatusInterval.
	StatusInterval conf.Duration `toml:"status_interval"`
}

// Control configures how comsrv executes the control commands queued by send_control.
type Control struct {
	StartupGrace  conf.Duration `toml:"startup_grace"`   // after start, wait this long for DTUs to reconnect before answering "offline"; default 5s
	SweepInterval conf.Duration `toml:"sweep_interval"`  // how often cmd:pending is scanned besides pub/sub wake-ups; default 1s
	ResultTTL     conf.Duration `toml:"result_ttl"`      // how long cmd:result:{id} is kept; default 1h
	ResultsMaxLen int           `toml:"results_max_len"` // approximate cap of the cmd:results stream; default 10000
}

// Frames configures the per-channel frame log (comsrv:{channel}:frames).
type Frames struct {
	Keep  int           `toml:"keep"`  // frames kept per channel, default 20; 0 disables the log (0..10000)
	Flush conf.Duration `toml:"flush"` // new frames are written at most this often per channel, default 2s
}

// Events configures the connection event stream (comsrv:events).
type Events struct {
	MaxLen         int `toml:"max_len"`          // approximate cap of the stream, default 10000
	RefusalsPerSec int `toml:"refusals_per_sec"` // refused connections recorded per second at most, default 20; the rest are counted
}

// Snapshot configures the copy of the run-time configuration (mappings,
// alarm limits, the device registry) that comsrv keeps on disk and
// restores when Redis comes back without it.
type Snapshot struct {
	Path     string        `toml:"path"`     // the file; default DefaultSnapshotPath, relative to the directory of comsrv.toml; "" keeps none
	Interval conf.Duration `toml:"interval"` // how often Redis is checked for a restart and for changes; default 1s
}

// DefaultSnapshotPath is the default [snapshot] path.
const DefaultSnapshotPath = "/var/lib/voltedge/config.snapshot"

// Redis tunes how comsrv writes to Redis.
type Redis struct {
	Writers       int           `toml:"writers"`        // concurrent batch writers, default 4
	BatchPoints   int           `toml:"batch_points"`   // points per FCALL at most, default 512
	FlushInterval conf.Duration `toml:"flush_interval"` // how often comsrv:stats is written, default 5s
}

// Template describes one device type: what to poll and how to decode it.
// It is one file in the templates directory; its name is the file's base name unless set.
type Template struct {
	Name   string  `toml:"name"`
	Tasks  []Task  `toml:"task"`
	Points []Point `toml:"point"`
	// Plan says how points that no [[task]] covers become requests.
	Plan Plan `toml:"plan"`

	File string `toml:"-"`
}

// Plan configures the automatic request planning of a template: points that
// no explicit [[task]] covers are coalesced into read requests per slave and
// function.
type Plan struct {
	Interval     conf.Duration `toml:"interval"`      // poll period of planned requests, default 1s
	MaxGap       int           `toml:"max_gap"`       // unused registers (or bits) allowed inside one request, default 10
	MaxRegisters int           `toml:"max_registers"` // registers per request at most, default 125 (1..125)
	MaxBits      int           `toml:"max_bits"`      // bits per request at most, default 2000 (1..2000)
	// OnePerPoint makes one request per point, for devices that reject ranges.
	OnePerPoint bool `toml:"one_request_per_point"`
	// WriteMultiple makes controls use FC 15/16 even for a single coil or
	// register, for devices that lack FC 5/6.
	WriteMultiple bool `toml:"write_multiple"`
}

// Task is one Modbus read request issued by comsrv.
type Task struct {
	Name     string        `toml:"name"`
	Slave    uint8         `toml:"slave"`    // default 1 (1..247)
	Function uint8         `toml:"function"` // 1, 2, 3 or 4
	Start    uint16        `toml:"start"`
	Count    uint16        `toml:"count"`    // ≤ 125 for FC 3/4, ≤ 2000 for FC 1/2
	Interval conf.Duration `toml:"interval"` // timer tasks, default 1s
	Trigger  string        `toml:"trigger"`  // "timer" (default), "heartbeat" or "connect"
}

// Point is one value decoded from a task's response.
type Point struct {
	ID       string  `toml:"id"`   // number or token without ':'; unique in the template; a label, not an address
	Name     string  `toml:"name"` // human name
	Slave    uint8   `toml:"slave"`
	Area     string  `toml:"area"`    // "holding" (FC 3, default), "input" (FC 4), "coil" (FC 1), "discrete" (FC 2)
	Address  uint16  `toml:"address"` // 0-based protocol address in Area, as sent on the wire (not a Modicon 4xxxx number)
	Type     string  `toml:"type"`    // bool, int16, uint16 (default), int32, uint32, float32, int64, uint64, float64
	Bit      int     `toml:"bit"`     // for type bool in a register area: bit 0..15; default -1 (unset)
	Order    string  `toml:"order"`   // ABCD (default), CDAB, BADC, DCBA; 64-bit: ABCDEFGH, GHEFCDAB, BADCFEHG, HGFEDCBA (or the 4-letter names, which Load turns into these)
	Scale    float64 `toml:"scale"`   // default 1
	Offset   float64 `toml:"offset"`
	Decimals *int    `toml:"decimals"` // digits after the point; default derived from scale and offset
	// Unit is the value's unit ("V", "kWh", "°C"); optional, ≤ 32 bytes.
	Unit string `toml:"unit"`
	// Description says what the value is; optional, ≤ 256 bytes.
	Description string `toml:"description"`
	// Min and Max bound the values a control may write to the point
	// (engineering units, after scale and offset); nil means no bound
	// beyond what the type can hold.
	Min *float64 `toml:"min"`
	Max *float64 `toml:"max"`
}

// Channel is one link to devices: a DTU bound by its registration id, or,
// when URL is set, a Modbus TCP device or serial line that comsrv polls.
type Channel struct {
	ID           string `toml:"id"`           // channel id used in Redis keys; no ':'
	Registration string `toml:"registration"` // DTU channels: the DTU's registration id (rendered per dtu.registration.encoding)
	Template     string `toml:"template"`     // required, except for line-profile DTUs, which are not polled
	Name         string `toml:"name"`

	// URL makes this a Modbus channel: "tcp://host:502", "rtuovertcp://host:port"
	// or "rtu:///dev/ttyUSB0". Registration must then be empty.
	URL      string        `toml:"url"`
	Baud     int           `toml:"baud"`      // rtu: default 9600
	DataBits int           `toml:"data_bits"` // rtu: default 8
	Parity   string        `toml:"parity"`    // rtu: "none" (default), "even" or "odd"
	StopBits int           `toml:"stop_bits"` // rtu: 1 (default) or 2
	Timeout  conf.Duration `toml:"timeout"`   // request timeout; default modbus.request_timeout
	// OnePerPoint overrides the template's plan.one_request_per_point for this device.
	OnePerPoint *bool `toml:"one_request_per_point"`

	// DTU channels only. Allow lists the source networks (CIDRs) the DTU may
	// connect from, besides its listener's allow; empty allows any.
	Allow []string `toml:"allow"`
	// Replace and ReplaceAfter override the listener's replacement policy
	// ("" keeps it).
	Replace      string        `toml:"replace"`
	ReplaceAfter conf.Duration `toml:"replace_after"`
	// Secret is sent by the DTU with its registration id, before it
	// (SecretPosition "prefix") or after it ("suffix", default).
	Secret         string `toml:"secret"`
	SecretPosition string `toml:"secret_position"`

	AllowNets []netip.Prefix `toml:"-"` // Allow, parsed

	// StatusInterval is how often the channel's status hash is refreshed,
	// resolved by Load: [modbus].status_interval for url channels,
	// [dtu].status_interval for DTU channels. A DTU channel is not bound to a
	// listener (any listener accepts its registration); a link through a
	// [[listener]] that sets its own status_interval refreshes at that
	// listener's DTU.StatusInterval, which Load fills (inherited from [dtu]
	// unless the listener sets it).
	StatusInterval conf.Duration `toml:"-"`

	T *Template `toml:"-"`
}

// ChannelFile is one file of the channels directory.
type ChannelFile struct {
	Channels []Channel      `toml:"channel"`
	Ranges   []ChannelRange `toml:"range"`
}

// ChannelRange declares many identical channels in one line:
// {n} in ID, Registration and Name is replaced by each number from First to Last;
// {n:0W} pads it with zeros to width W.
type ChannelRange struct {
	First        int    `toml:"first"`
	Last         int    `toml:"last"`
	ID           string `toml:"id"`
	Registration string `toml:"registration"`
	Template     string `toml:"template"`
	Name         string `toml:"name"`

	// Shared by every channel of the range (see Channel).
	Allow          []string      `toml:"allow"`
	Replace        string        `toml:"replace"`
	ReplaceAfter   conf.Duration `toml:"replace_after"`
	Secret         string        `toml:"secret"`
	SecretPosition string        `toml:"secret_position"`
}

// SameChannel reports whether two channels would be served identically:
// every field is equal and their templates have the same content (wherever
// the template files are). A reload keeps the links of such channels.
func SameChannel(a, b *Channel) bool {
	ac, bc := *a, *b
	ac.T, bc.T = nil, nil
	if !reflect.DeepEqual(ac, bc) {
		return false
	}
	return sameTemplate(a.T, b.T)
}

// SameTemplate reports whether two templates have the same content,
// wherever their files are.
func SameTemplate(a, b *Template) bool { return sameTemplate(a, b) }

func sameTemplate(a, b *Template) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a == b {
		return true
	}
	ac, bc := *a, *b
	ac.File, bc.File = "", ""
	return reflect.DeepEqual(ac, bc)
}
