package config

import (
	"encoding/hex"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/voltedge/voltedge/internal/conf"
	"github.com/voltedge/voltedge/internal/keys"
)

// Defaults of comsrv.toml (see the field comments in types.go).
const (
	DefaultListen              = ":22334"
	DefaultMetricsListen       = ":9101"
	DefaultMaxConnections      = 12000
	DefaultRegistrationTimeout = 10 * time.Second
	DefaultWriteTimeout        = 5 * time.Second
	DefaultRefuseLogInterval   = 10 * time.Second
	DefaultStatusInterval      = 5 * time.Second
	DefaultTerminator          = "\n"
	DefaultMaxLength           = 64
	DefaultPattern             = `^[A-Za-z0-9_.-]{1,64}$`
	DefaultHeartbeat           = "www.usr.cn"
	DefaultHeartbeatTimeout    = 90 * time.Second
	DefaultRequestTimeout      = time.Second
	DefaultRetries             = 1
	DefaultFlushDelay          = 50 * time.Millisecond
	DefaultWriters             = 4
	DefaultBatchPoints         = 512
	DefaultFlushInterval       = 5 * time.Second
	DefaultTaskInterval        = time.Second
	MinTaskInterval            = 10 * time.Millisecond

	// MaxChannels bounds the channels of all channel files together.
	MaxChannels = 1000000
)

// Default globs, relative to the directory of comsrv.toml.
var (
	defaultTemplates = []string{"templates/*.toml"}
	defaultChannels  = []string{"channels/*.toml"}
)

// Load reads comsrv.toml at path, applies the defaults, loads the template
// and channel files its globs select (relative to the directory of path),
// expands channel ranges, resolves each channel's template and validates
// everything. Errors name file, line, column and key; up to conf.MaxErrors of
// them are reported together.
//
// After Load, every Point has its defaults filled in: Name (= ID), Slave (1),
// Area ("holding"), Type ("uint16"), Order ("ABCD", and for 64-bit types the
// 8-letter form: ABCD→ABCDEFGH, CDAB→GHEFCDAB, BADC→BADCFEHG,
// DCBA→HGFEDCBA), Bit (-1 unless given) and Scale (1 unless given).
// Channel.Name defaults to the channel id.
func Load(path string) (*Config, error) {
	cfg := &Config{File: path}
	pos, err := conf.Decode(path, cfg)
	if err != nil {
		return nil, err
	}
	cfg.pos = pos
	var errs conf.Errors
	cfg.check(pos, &errs)
	if errs.Len() > 0 {
		return nil, errs.Err()
	}
	if cfg.TemplateByID, err = LoadTemplates(cfg); err != nil {
		return nil, err
	}
	for i, l := range cfg.AllListeners() {
		key := "dtu.provision_template"
		if i > 0 {
			key = fmt.Sprintf("listener[%d].provision_template", i-1)
		}
		if l.UnknownIDs != "provision" || l.ProvisionTemplate == "" || (i > 0 && !pos.Defined(key)) {
			continue // [dtu]'s, inherited: checked once, at [dtu]
		}
		if _, ok := cfg.TemplateByID[l.ProvisionTemplate]; !ok {
			errs.Addf(pos, key, "template %q does not exist", l.ProvisionTemplate)
		}
	}
	if errs.Len() > 0 {
		return nil, errs.Err()
	}
	if cfg.ChannelList, err = LoadChannels(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Defaults returns the settings of an empty comsrv.toml: every default
// filled in as Load fills it, no templates and no channels. Code that builds
// a configuration without a file (tests) starts from it.
func Defaults() *Config {
	c := &Config{}
	var errs conf.Errors
	c.check(nil, &errs) // nothing is set: nothing to refuse
	if errs.Len() > 0 {
		panic("config: the defaults do not validate: " + errs.Err().Error())
	}
	c.TemplateByID = map[string]*Template{}
	return c
}

// NewDTUChannel returns the channel for registration id served without a
// channel file (the device registry, provisioning), with the defaults Load
// gives a DTU channel: name and registration = id, the request timeout and
// the status interval of [modbus] and [dtu]. t may be nil (not polled).
func (c *Config) NewDTUChannel(id string, t *Template) *Channel {
	ch := &Channel{ID: id, Registration: id, Name: id, T: t,
		Timeout: c.Modbus.RequestTimeout, StatusInterval: c.DTU.StatusInterval}
	if t != nil {
		ch.Template = t.Name
	}
	return ch
}

// ChannelByRegistration indexes ChannelList by registration id.
func (c *Config) ChannelByRegistration() map[string]*Channel {
	m := make(map[string]*Channel, len(c.ChannelList))
	for _, ch := range c.ChannelList {
		m[ch.Registration] = ch
	}
	return m
}

// Dir is the directory the globs are relative to.
func (c *Config) Dir() string { return filepath.Dir(c.File) }

// check applies the defaults of comsrv.toml and validates it.
func (c *Config) check(pos *conf.Positions, errs *conf.Errors) {
	if !pos.Defined("redis_url") {
		c.RedisURL = conf.DefaultRedisURL
	}
	if c.RedisURL == "" {
		errs.Addf(pos, "redis_url", "must not be empty")
	}
	if !pos.Defined("log_level") {
		c.LogLevel = "info"
	}
	if _, err := conf.ParseLogLevel(c.LogLevel); err != nil {
		errs.Addf(pos, "log_level", "%v", err)
	}
	if !pos.Defined("metrics_listen") {
		c.MetricsListen = DefaultMetricsListen
	}
	if !pos.Defined("templates") {
		c.Templates = slices.Clone(defaultTemplates)
	}
	if !pos.Defined("channels") {
		c.Channels = slices.Clone(defaultChannels)
	}
	checkGlobs(pos, "templates", c.Templates, errs)
	checkGlobs(pos, "channels", c.Channels, errs)
	raw := c.DTU // as decoded: the listeners inherit what [dtu] sets
	before := errs.Len()
	c.DTU.check(pos, errs, keyer{own: "dtu."}, "dtu")
	dtuOK := errs.Len() == before
	names := map[string]string{c.DTU.Name: "dtu"}
	addrs := map[string]string{c.DTU.Listen: "dtu"}
	for i := range c.Listeners {
		p := fmt.Sprintf("listener[%d].", i)
		l := &c.Listeners[i]
		k := keyer{own: p}
		if dtuOK { // else [dtu]'s errors would be reported again for each listener
			k = inherit(pos, &raw, l, p)
		}
		l.check(pos, errs, k, fmt.Sprintf("listener%d", i+1))
		if prev, dup := names[l.Name]; dup {
			errs.Addf(pos, p+"name", "listener name %q is already used by %s", l.Name, prev)
		}
		names[l.Name] = strings.TrimSuffix(p, ".")
		if prev, dup := addrs[l.Listen]; dup && l.Listen != "" && !strings.HasSuffix(l.Listen, ":0") {
			errs.Addf(pos, p+"listen", "address %q is already used by %s", l.Listen, prev)
		}
		addrs[l.Listen] = strings.TrimSuffix(p, ".")
	}
	c.Modbus.check(pos, errs)
	c.Redis.check(pos, errs)
	c.Control.check(pos, errs)
	c.Frames.check(pos, errs)
	c.Events.check(pos, errs)
	if !pos.Defined("snapshot.path") {
		c.Snapshot.Path = DefaultSnapshotPath
	} else if c.Snapshot.Path != "" && !filepath.IsAbs(c.Snapshot.Path) && c.File != "" {
		c.Snapshot.Path = filepath.Join(c.Dir(), c.Snapshot.Path)
	}
	dur(pos, errs, "snapshot.interval", &c.Snapshot.Interval, time.Second, 100*time.Millisecond)
}

// AllListeners returns [dtu] followed by the [[listener]] entries.
func (c *Config) AllListeners() []*DTU {
	out := make([]*DTU, 0, 1+len(c.Listeners))
	out = append(out, &c.DTU)
	for i := range c.Listeners {
		out = append(out, &c.Listeners[i])
	}
	return out
}

// Profiles of DTU listeners.
const (
	ProfileTransparent = "transparent"
	ProfileLine        = "line"
	ProfileTLV         = "tlv"
)

// Default heartbeat timeouts of the line and tlv profiles.
const (
	DefaultLineHeartbeatTimeout = time.Second
	DefaultTLVHeartbeatTimeout  = 60 * time.Second
	DefaultTLVMaxMissed         = 3
	DefaultLineMaxLength        = 256
)

func (c *Control) check(pos *conf.Positions, errs *conf.Errors) {
	dur(pos, errs, "control.startup_grace", &c.StartupGrace, 5*time.Second, 0)
	dur(pos, errs, "control.sweep_interval", &c.SweepInterval, time.Second, 10*time.Millisecond)
	dur(pos, errs, "control.result_ttl", &c.ResultTTL, time.Hour, time.Second)
	num(pos, errs, "control.results_max_len", &c.ResultsMaxLen, 10000, 100, 10000000)
}

// Frame log defaults: 20 frames per channel cost about 4 KB of Redis memory
// with two 100-register polls a second (40 MB at 10,000 channels); a flush
// every 2 s costs two Redis commands per channel per flush.
const (
	DefaultFramesKeep  = 20
	DefaultFramesFlush = 2 * time.Second
)

func (f *Frames) check(pos *conf.Positions, errs *conf.Errors) {
	num(pos, errs, "frames.keep", &f.Keep, DefaultFramesKeep, 0, 10000)
	dur(pos, errs, "frames.flush", &f.Flush, DefaultFramesFlush, 10*time.Millisecond)
}

func (e *Events) check(pos *conf.Positions, errs *conf.Errors) {
	num(pos, errs, "events.max_len", &e.MaxLen, 10000, 100, 10000000)
	num(pos, errs, "events.refusals_per_sec", &e.RefusalsPerSec, 20, 0, 100000)
}

func checkGlobs(pos *conf.Positions, key string, globs []string, errs *conf.Errors) {
	for i, g := range globs {
		k := fmt.Sprintf("%s[%d]", key, i)
		if g == "" {
			errs.Addf(pos, k, "empty pattern")
		} else if _, err := filepath.Match(g, ""); err != nil {
			errs.Addf(pos, k, "bad pattern %q: %v", g, err)
		}
	}
}

// dur applies a default to an unset duration and checks the lower bound.
func dur(pos *conf.Positions, errs *conf.Errors, key string, d *conf.Duration, def, min time.Duration) {
	if !pos.Defined(key) {
		d.Duration = def
		return
	}
	if d.Duration < min {
		if min == 1 {
			errs.Addf(pos, key, "must be greater than 0")
		} else {
			errs.Addf(pos, key, "must be at least %v", min)
		}
	}
}

// num applies a default to an unset integer and checks its bounds.
func num(pos *conf.Positions, errs *conf.Errors, key string, v *int, def, lo, hi int) {
	if !pos.Defined(key) {
		*v = def
		return
	}
	if *v < lo || *v > hi {
		errs.Addf(pos, key, "%d is out of range (%d..%d)", *v, lo, hi)
	}
}

// str applies a default to an unset string and checks it is one of allowed.
func str(pos *conf.Positions, errs *conf.Errors, key string, v *string, def string, allowed ...string) {
	if !pos.Defined(key) {
		*v = def
		return
	}
	if len(allowed) > 0 && !slices.Contains(allowed, *v) {
		errs.Addf(pos, key, "unknown value %q (want %s)", *v, orList(allowed))
	}
}

func orList(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// check applies the defaults of one DTU listener, whose keys k names, and validates it.
func (d *DTU) check(pos *conf.Positions, errs *conf.Errors, k keyer, defName string) {
	p := k.own
	str(pos, errs, k.of("name"), &d.Name, defName)
	if !keys.ValidID(d.Name) {
		errs.Addf(pos, k.of("name"), "%q is not a valid listener name", d.Name)
	}
	str(pos, errs, k.of("profile"), &d.Profile, ProfileTransparent, ProfileTransparent, ProfileLine, ProfileTLV)
	def := DefaultListen
	if p != "dtu." {
		def = "" // each listener needs its own address
	}
	str(pos, errs, k.of("listen"), &d.Listen, def)
	if d.Listen == "" {
		errs.Addf(pos, k.of("listen"), "must not be empty")
	}
	num(pos, errs, k.of("max_connections"), &d.MaxConnections, DefaultMaxConnections, 1, 100000)
	d.checkGuard(pos, errs, k)
	dur(pos, errs, k.of("registration_timeout"), &d.RegistrationTimeout, DefaultRegistrationTimeout, 1)
	dur(pos, errs, k.of("write_timeout"), &d.WriteTimeout, DefaultWriteTimeout, 1)
	dur(pos, errs, k.of("refuse_log_interval"), &d.RefuseLogInterval, DefaultRefuseLogInterval, 1)
	dur(pos, errs, k.of("status_interval"), &d.StatusInterval, DefaultStatusInterval, 1)
	str(pos, errs, k.of("unknown_ids"), &d.UnknownIDs, "refuse", "refuse", "provision")
	if d.UnknownIDs == "provision" && d.ProvisionTemplate == "" && d.Profile != ProfileLine {
		errs.Addf(pos, k.of("provision_template"), "must name a template when unknown_ids is \"provision\"")
	}
	d.Registration.check(pos, errs, k.in("registration"))
	if d.Profile != ProfileTransparent {
		for _, f := range []string{"mode", "length", "terminator", "terminator_hex", "max_length", "encoding"} {
			if key := p + "registration." + f; pos.Defined(key) {
				errs.Add(pos.KeyErrorf(key, "only used by the transparent profile (the %s profile defines its own registration)", d.Profile))
			}
		}
	}
	d.Heartbeat.check(pos, errs, k.in("heartbeat"), d.Profile)
	if d.Profile == ProfileLine {
		str(pos, errs, k.of("line.result_channel"), &d.Line.ResultChannel, keys.DefaultLineResults)
		if d.Line.ResultChannel == "" {
			errs.Addf(pos, k.of("line.result_channel"), "must not be empty")
		}
		num(pos, errs, k.of("line.max_line_length"), &d.Line.MaxLineLength, DefaultLineMaxLength, 16, 4096)
	} else if pos.Defined(p + "line") {
		errs.Add(pos.KeyErrorf(k.of("line"), "only used by the line profile"))
	}
}

func (r *Registration) check(pos *conf.Positions, errs *conf.Errors, key func(string) string) {
	str(pos, errs, key("mode"), &r.Mode, "terminator", "terminator", "fixed")
	switch r.Mode {
	case "fixed":
		if !pos.Defined(key("length")) {
			errs.Addf(pos, key("length"), "must be set in fixed mode (1..256)")
		} else if r.Length < 1 || r.Length > 256 {
			errs.Addf(pos, key("length"), "%d is out of range (1..256)", r.Length)
		}
		for _, k := range []string{"terminator", "terminator_hex", "max_length"} {
			if pos.Defined(key(k)) {
				errs.Add(pos.KeyErrorf(key(k), "only used in terminator mode"))
			}
		}
	case "terminator":
		if pos.Defined(key("length")) {
			errs.Add(pos.KeyErrorf(key("length"), "only used in fixed mode"))
		}
		num(pos, errs, key("max_length"), &r.MaxLength, DefaultMaxLength, 1, 256)
		r.TerminatorBytes = textOrHex(pos, errs, key("terminator"), key("terminator_hex"), r.Terminator, r.TerminatorHex, DefaultTerminator, 16)
		if !pos.Defined(key("terminator")) && !pos.Defined(key("terminator_hex")) {
			r.Terminator = DefaultTerminator
		}
	}
	str(pos, errs, key("encoding"), &r.Encoding, "text", "text", "hex", "decimal")
	if r.Encoding == "decimal" && (r.Mode != "fixed" || r.Length > 8) {
		errs.Addf(pos, key("encoding"), "decimal needs fixed mode with a length of at most 8 bytes")
	}
	str(pos, errs, key("pattern"), &r.Pattern, DefaultPattern)
	if r.Pattern == "" {
		errs.Addf(pos, key("pattern"), "must not be empty")
		return
	}
	re, err := regexp.Compile(r.Pattern)
	if err != nil {
		errs.Addf(pos, key("pattern"), "bad regular expression: %v", err)
	}
	r.Regexp = re
}

func (h *Heartbeat) check(pos *conf.Positions, errs *conf.Errors, key func(string) string, profile string) {
	timeout, missed := DefaultHeartbeatTimeout, 1
	switch profile {
	case ProfileTransparent:
		h.Bytes = textOrHex(pos, errs, key("text"), key("hex"), h.Text, h.Hex, DefaultHeartbeat, 256)
		if !pos.Defined(key("text")) && !pos.Defined(key("hex")) {
			h.Text = DefaultHeartbeat
		}
	case ProfileLine:
		timeout = DefaultLineHeartbeatTimeout
	case ProfileTLV:
		timeout, missed = DefaultTLVHeartbeatTimeout, DefaultTLVMaxMissed
	}
	if profile != ProfileTransparent {
		for _, k := range []string{"text", "hex"} {
			if pos.Defined(key(k)) {
				errs.Add(pos.KeyErrorf(key(k), "only used by the transparent profile (the %s profile defines its own heartbeat)", profile))
			}
		}
	}
	dur(pos, errs, key("timeout"), &h.Timeout, timeout, 0)
	num(pos, errs, key("max_missed"), &h.MaxMissed, missed, 1, 100)
}

// Deadline is how long a link may stay without a heartbeat (timeout × max_missed); 0 disables the check.
func (h *Heartbeat) Deadline() time.Duration {
	return h.Timeout.Duration * time.Duration(max(h.MaxMissed, 1))
}

// textOrHex resolves a byte string given either as text or as hex (exactly
// one of them), with a default when neither is set.
func textOrHex(pos *conf.Positions, errs *conf.Errors, textKey, hexKey, text, hx, def string, maxLen int) []byte {
	hasText, hasHex := pos.Defined(textKey), pos.Defined(hexKey)
	var b []byte
	switch {
	case hasText && hasHex:
		errs.Add(pos.KeyErrorf(hexKey, "set either %s or %s, not both", lastKey(textKey), lastKey(hexKey)))
		return nil
	case hasHex:
		var err error
		if b, err = hex.DecodeString(strings.ReplaceAll(hx, " ", "")); err != nil {
			errs.Addf(pos, hexKey, "bad hex %q: %v", hx, err)
			return nil
		}
		if len(b) == 0 {
			errs.Addf(pos, hexKey, "must not be empty")
			return nil
		}
	case hasText:
		if text == "" {
			errs.Addf(pos, textKey, "must not be empty")
			return nil
		}
		b = []byte(text)
	default:
		b = []byte(def)
	}
	if len(b) > maxLen {
		key := textKey
		if hasHex {
			key = hexKey
		}
		errs.Addf(pos, key, "%d bytes is too long (at most %d)", len(b), maxLen)
	}
	return b
}

func lastKey(k string) string { return k[strings.LastIndexByte(k, '.')+1:] }

func (m *Modbus) check(pos *conf.Positions, errs *conf.Errors) {
	dur(pos, errs, "modbus.request_timeout", &m.RequestTimeout, DefaultRequestTimeout, 1)
	num(pos, errs, "modbus.retries", &m.Retries, DefaultRetries, 0, 5)
	dur(pos, errs, "modbus.flush_delay", &m.FlushDelay, DefaultFlushDelay, 0)
	num(pos, errs, "modbus.backoff_after", &m.BackoffAfter, DefaultBackoffAfter, 1, 100)
	dur(pos, errs, "modbus.backoff_cooldown", &m.BackoffCooldown, DefaultBackoffCooldown, 1)
	dur(pos, errs, "modbus.reconnect_min", &m.ReconnectMin, DefaultReconnectMin, 1)
	dur(pos, errs, "modbus.reconnect_max", &m.ReconnectMax, DefaultReconnectMax, 1)
	dur(pos, errs, "modbus.status_interval", &m.StatusInterval, DefaultStatusInterval, 1)
	if m.ReconnectMin.Duration > 0 && m.ReconnectMax.Duration < m.ReconnectMin.Duration {
		key := "modbus.reconnect_max"
		if !pos.Defined(key) {
			key = "modbus.reconnect_min"
		}
		errs.Addf(pos, key, "reconnect_max (%v) is below reconnect_min (%v)", m.ReconnectMax.Duration, m.ReconnectMin.Duration)
	}
}

func (r *Redis) check(pos *conf.Positions, errs *conf.Errors) {
	num(pos, errs, "redis.writers", &r.Writers, DefaultWriters, 1, 64)
	num(pos, errs, "redis.batch_points", &r.BatchPoints, DefaultBatchPoints, 16, 8192)
	dur(pos, errs, "redis.flush_interval", &r.FlushInterval, DefaultFlushInterval, 1)
}

// resolveGlobs returns the files the patterns select, relative to dir,
// sorted and without duplicates. A pattern without wildcards must name an
// existing file; one with wildcards may select nothing.
func resolveGlobs(pos *conf.Positions, key, dir string, globs []string, errs *conf.Errors) []string {
	var files []string
	for i, g := range globs {
		pat := g
		if !filepath.IsAbs(pat) {
			pat = filepath.Join(dir, pat)
		}
		m, err := filepath.Glob(pat)
		if err != nil {
			errs.Addf(pos, fmt.Sprintf("%s[%d]", key, i), "bad pattern %q: %v", g, err)
			continue
		}
		if len(m) == 0 && !strings.ContainsAny(g, `*?[\`) {
			errs.Addf(pos, fmt.Sprintf("%s[%d]", key, i), "file %s does not exist", pat)
		}
		files = append(files, m...)
	}
	slices.Sort(files)
	return slices.Compact(files)
}

// Function returns the Modbus read function that serves an area (1..4), or
// 0 for an unknown area.
func Function(area string) uint8 {
	switch area {
	case "coil":
		return 1
	case "discrete":
		return 2
	case "holding":
		return 3
	case "input":
		return 4
	}
	return 0
}

// typeWidth is the number of registers of each point type.
var typeWidth = map[string]int{
	"bool": 1, "int16": 1, "uint16": 1,
	"int32": 2, "uint32": 2, "float32": 2,
	"int64": 4, "uint64": 4, "float64": 4,
}

const typeNames = "bool, int16, uint16, int32, uint32, float32, int64, uint64, float64"

// order64 maps the 4-letter byte orders to their 64-bit forms.
var order64 = map[string]string{
	"ABCD": "ABCDEFGH", "CDAB": "GHEFCDAB", "BADC": "BADCFEHG", "DCBA": "HGFEDCBA",
	"ABCDEFGH": "ABCDEFGH", "GHEFCDAB": "GHEFCDAB", "BADCFEHG": "BADCFEHG", "HGFEDCBA": "HGFEDCBA",
}

// Registers is the number of 16-bit registers the point occupies, or 1 (one
// bit) in the coil and discrete areas.
func (p *Point) Registers() int {
	if p.Area == "coil" || p.Area == "discrete" {
		return 1
	}
	return typeWidth[p.Type]
}

// Function is the Modbus read function of the point's area.
func (p *Point) Function() uint8 { return Function(p.Area) }

// IsRegisterArea reports whether the point is in the holding or input area.
func (p *Point) IsRegisterArea() bool { return p.Area == "holding" || p.Area == "input" }

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
