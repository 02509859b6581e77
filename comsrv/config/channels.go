package config

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/voltedge/voltedge/internal/conf"
	"github.com/voltedge/voltedge/internal/keys"
)

// LoadChannels loads and validates the channel files cfg.Channels selects
// (relative to the directory of cfg.File), expanding ranges and resolving
// each channel's template from cfg.TemplateByID. It needs a Config that
// Load has checked (for the registration pattern) and returns the channels
// sorted by id (numeric ids first, in numeric order). Load calls it; a reload
// may call it again.
func LoadChannels(cfg *Config) ([]*Channel, error) {
	var errs conf.Errors
	files := resolveGlobs(cfg.pos, "channels", cfg.Dir(), cfg.Channels, &errs)
	cl := channelLoader{
		cfg:   cfg,
		errs:  &errs,
		byID:  make(map[string]int32),
		byReg: make(map[string]int32),

		bySerial: make(map[string]int32),
	}
	for _, f := range files {
		cl.file(f)
	}
	if errs.Len() > 0 {
		return nil, errs.Err()
	}
	slices.SortFunc(cl.list, func(a, b *Channel) int { return CompareIDs(a.ID, b.ID) })
	return cl.list, nil
}

// CompareIDs orders channel ids: all-digit ids first, by numeric value
// (then text), then the others by text.
func CompareIDs(a, b string) int {
	da, db := isDigits(a), isDigits(b)
	switch {
	case da && db:
		return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b))
	case da:
		return -1
	case db:
		return 1
	}
	return cmp.Compare(a, b)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

type channelLoader struct {
	cfg   *Config
	errs  *conf.Errors
	list  []*Channel
	byID  map[string]int32 // channel id → index into where
	byReg map[string]int32
	// bySerial is serial device → index into where: one port serves one channel.
	bySerial map[string]int32
	where    []string // "file:line:col" of each channel or range
}

func (cl *channelLoader) file(f string) {
	var cf ChannelFile
	pos, err := conf.Decode(f, &cf)
	if err != nil {
		cl.errs.Add(err)
		return
	}
	for i := range cf.Channels {
		c := cf.Channels[i]
		k := fmt.Sprintf("channel[%d].", i)
		if !pos.Defined(k + "name") {
			c.Name = c.ID
		}
		ok := true
		switch {
		case !pos.Defined(k + "id"):
			cl.errs.Addf(pos, k+"id", "must be set")
			ok = false
		case !keys.ValidID(c.ID):
			cl.errs.Addf(pos, k+"id", "%q is not a valid channel id (no ':', spaces, '*', '?', '[' or ']'; 1..128 bytes)", c.ID)
			ok = false
		}
		var t *Template
		if pos.Defined(k + "url") {
			if !cl.checkModbus(pos, k, &c) {
				ok = false
			}
			t = cl.template(pos, k+"template", c.Template)
		} else {
			if !cl.checkDTU(pos, k, &c) {
				ok = false
			}
			t = cl.optionalTemplate(pos, k+"template", c.Template)
			if t == nil && c.Template != "" {
				ok = false
			}
		}
		if !cl.checkGuard(pos, k, &c) || !cl.checkSent(pos, k+"secret", &c) {
			ok = false
		}
		dur(pos, cl.errs, k+"timeout", &c.Timeout, cl.cfg.Modbus.RequestTimeout.Duration, 1)
		c.StatusInterval = cl.cfg.DTU.StatusInterval
		if c.URL != "" {
			c.StatusInterval = cl.cfg.Modbus.StatusInterval
		}
		if !ok || (t == nil && c.URL != "") {
			continue
		}
		c.T = t
		src := cl.source(pos.Where(k + "id"))
		if cl.add(pos, k, &c, src) {
			cl.list = append(cl.list, &c)
		}
	}
	for i := range cf.Ranges {
		cl.rangeEntries(pos, fmt.Sprintf("range[%d].", i), &cf.Ranges[i])
	}
}

func (cl *channelLoader) source(w string) int32 {
	cl.where = append(cl.where, w)
	return int32(len(cl.where) - 1)
}

// add records a channel's id and registration (or serial device), refusing duplicates.
func (cl *channelLoader) add(pos *conf.Positions, k string, c *Channel, src int32) bool {
	if prev, dup := cl.byID[c.ID]; dup {
		cl.errs.Addf(pos, k+"id", "channel id %q is already defined at %s", c.ID, cl.where[prev])
		return false
	}
	if c.Registration != "" {
		if prev, dup := cl.byReg[c.Registration]; dup {
			cl.errs.Addf(pos, k+"registration", "registration %q is already used at %s", c.Registration, cl.where[prev])
			return false
		}
	}
	dev, serial := SerialDevice(c.URL)
	if serial {
		if prev, dup := cl.bySerial[dev]; dup {
			cl.errs.Addf(pos, k+"url", "serial device %s is already used at %s", dev, cl.where[prev])
			return false
		}
	}
	if len(cl.list) >= MaxChannels {
		cl.errs.Addf(pos, k+"id", "more than %d channels", MaxChannels)
		return false
	}
	cl.byID[c.ID] = src
	if c.Registration != "" {
		cl.byReg[c.Registration] = src
	}
	if serial {
		cl.bySerial[dev] = src
	}
	return true
}

// serialKeys are the channel keys that only an rtu:// channel uses.
var serialKeys = []string{"baud", "data_bits", "parity", "stop_bits"}

// checkDTU validates a channel without url: a DTU bound by its registration.
func (cl *channelLoader) checkDTU(pos *conf.Positions, k string, c *Channel) bool {
	ok := cl.checkRegistration(pos, k+"registration", c.Registration)
	for _, f := range serialKeys {
		if pos.Defined(k + f) {
			cl.errs.Add(pos.KeyErrorf(k+f, "only used by Modbus channels with an rtu:// url"))
			ok = false
		}
	}
	return ok
}

// Modbus URL schemes.
const (
	SchemeTCP        = "tcp"        // Modbus TCP (MBAP framing)
	SchemeRTUOverTCP = "rtuovertcp" // RTU frames through a TCP socket (serial server, gateway in transparent mode)
	SchemeRTU        = "rtu"        // RTU on a local serial line
)

// Defaults of the [modbus] keys that Modbus TCP and serial channels use.
const (
	DefaultBackoffAfter    = 3
	DefaultBackoffCooldown = 30 * time.Second
	DefaultReconnectMin    = time.Second
	DefaultReconnectMax    = 60 * time.Second
)

// Serial line defaults of rtu:// channels.
const (
	DefaultBaud     = 9600
	DefaultDataBits = 8
	DefaultParity   = "none"
	DefaultStopBits = 1
)

// baudRates are the serial speeds accepted for rtu:// channels.
var baudRates = []int{
	300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400, 57600, 115200,
	230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000,
	2000000, 2500000, 3000000, 3500000, 4000000,
}

// ParseURL splits a Modbus channel URL into its scheme and address (host:port
// or serial device), checking that the scheme is tcp, rtuovertcp or rtu and
// that the address suits it.
func ParseURL(u string) (scheme, addr string, err error) {
	scheme, addr, found := strings.Cut(u, "://")
	if !found {
		return "", "", fmt.Errorf("%q is not a Modbus URL (want tcp://host:port, rtuovertcp://host:port or rtu:///dev/ttyX)", u)
	}
	if strings.ContainsFunc(addr, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", "", fmt.Errorf("%q: the address contains spaces or control characters", u)
	}
	switch scheme {
	case SchemeTCP, SchemeRTUOverTCP:
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return "", "", fmt.Errorf("%q: want %s://host:port (e.g. %s://192.168.1.20:502): %v", u, scheme, scheme, err)
		}
		if host == "" {
			return "", "", fmt.Errorf("%q: the host is missing", u)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Errorf("%q: port %q is not a number in 1..65535", u, port)
		}
	case SchemeRTU:
		if addr == "" {
			return "", "", fmt.Errorf("%q: the serial device is missing (e.g. rtu:///dev/ttyUSB0)", u)
		}
	default:
		return "", "", fmt.Errorf("%q: unknown scheme %q (want tcp, rtuovertcp or rtu)", u, scheme)
	}
	return scheme, addr, nil
}

// SerialDevice returns the device of an rtu:// URL; ok is false for other URLs.
func SerialDevice(u string) (dev string, ok bool) {
	scheme, addr, err := ParseURL(u)
	if err != nil || scheme != SchemeRTU {
		return "", false
	}
	return addr, true
}

// checkModbus validates a channel with url (a Modbus TCP device or serial
// line) and applies the serial defaults.
func (cl *channelLoader) checkModbus(pos *conf.Positions, k string, c *Channel) bool {
	before := cl.errs.Len()
	if pos.Defined(k + "registration") {
		cl.errs.Add(pos.KeyErrorf(k+"registration", "must not be set for a Modbus channel (url); registration is for DTUs"))
	}
	scheme, _, err := ParseURL(c.URL)
	if err != nil {
		cl.errs.Addf(pos, k+"url", "%v", err)
		return false
	}
	if scheme != SchemeRTU {
		for _, f := range serialKeys {
			if pos.Defined(k + f) {
				cl.errs.Add(pos.KeyErrorf(k+f, "only used with an rtu:// url, not %s://", scheme))
			}
		}
		return cl.errs.Len() == before
	}
	if !pos.Defined(k + "baud") {
		c.Baud = DefaultBaud
	} else if !slices.Contains(baudRates, c.Baud) {
		cl.errs.Addf(pos, k+"baud", "unsupported baud rate %d (want one of %s)", c.Baud, intList(baudRates))
	}
	num(pos, cl.errs, k+"data_bits", &c.DataBits, DefaultDataBits, 5, 8)
	str(pos, cl.errs, k+"parity", &c.Parity, DefaultParity, "none", "even", "odd")
	if !pos.Defined(k + "stop_bits") {
		c.StopBits = DefaultStopBits
	} else if c.StopBits != 1 && c.StopBits != 2 {
		cl.errs.Addf(pos, k+"stop_bits", "%d is not 1 or 2", c.StopBits)
	}
	return cl.errs.Len() == before
}

func intList(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

func (cl *channelLoader) checkRegistration(pos *conf.Positions, key, reg string) bool {
	switch re := cl.cfg.DTU.Registration.Regexp; {
	case reg == "":
		cl.errs.Addf(pos, key, "must be set")
	case re != nil && !re.MatchString(reg):
		cl.errs.Addf(pos, key, "registration %q does not match dtu.registration.pattern %q", reg, cl.cfg.DTU.Registration.Pattern)
	default:
		return true
	}
	return false
}

// template resolves a required template name.
func (cl *channelLoader) template(pos *conf.Positions, key, name string) *Template {
	if name == "" {
		cl.errs.Addf(pos, key, "must be set")
		return nil
	}
	return cl.optionalTemplate(pos, key, name)
}

// optionalTemplate resolves a template name that may be empty (a DTU that
// is not polled, such as a line-profile device); it returns nil for "".
func (cl *channelLoader) optionalTemplate(pos *conf.Positions, key, name string) *Template {
	if name == "" {
		return nil
	}
	t := cl.cfg.TemplateByID[name]
	if t == nil {
		cl.errs.Addf(pos, key, "template %q does not exist", name)
	}
	return t
}

// rangeEntries validates and expands one [[range]].
func (cl *channelLoader) rangeEntries(pos *conf.Positions, k string, r *ChannelRange) {
	before := cl.errs.Len()
	for _, f := range []string{"first", "last", "id", "registration"} {
		if !pos.Defined(k + f) {
			cl.errs.Addf(pos, k+f, "must be set")
		}
	}
	if cl.errs.Len() > before {
		return
	}
	if err := conf.CheckRange(r.First, r.Last); err != nil {
		cl.errs.Addf(pos, k+"last", "%v", err)
	}
	many := r.Last > r.First
	pattern := func(key, s string, required bool) conf.NumberPattern {
		p, err := conf.ParseNumberPattern(s)
		if err != nil {
			cl.errs.Addf(pos, k+key, "%v", err)
		} else if required && many && !p.HasN() {
			cl.errs.Addf(pos, k+key, "must contain {n} or {n:0W} to differ between the entries of the range")
		}
		return p
	}
	idP := pattern("id", r.ID, true)
	regP := pattern("registration", r.Registration, true)
	nameP := pattern("name", r.Name, false)
	t := cl.optionalTemplate(pos, k+"template", r.Template)
	guard := Channel{Allow: r.Allow, Replace: r.Replace, ReplaceAfter: r.ReplaceAfter, Secret: r.Secret, SecretPosition: r.SecretPosition}
	cl.checkGuard(pos, k, &guard)
	if cl.errs.Len() > before {
		return
	}
	src := cl.source(pos.Where(k + "id"))
	hasName := pos.Defined(k + "name")
	timeout := cl.cfg.Modbus.RequestTimeout
	for n := r.First; n <= r.Last; n++ {
		c := &Channel{ID: idP.Expand(n), Registration: regP.Expand(n), Template: r.Template, T: t, Timeout: timeout,
			StatusInterval: cl.cfg.DTU.StatusInterval,
			Allow:          guard.Allow, AllowNets: guard.AllowNets, Replace: guard.Replace, ReplaceAfter: guard.ReplaceAfter,
			Secret: guard.Secret, SecretPosition: guard.SecretPosition}
		if hasName {
			c.Name = nameP.Expand(n)
		} else {
			c.Name = c.ID
		}
		if !keys.ValidID(c.ID) {
			cl.errs.Addf(pos, k+"id", "expands to %q for n=%d, which is not a valid channel id", c.ID, n)
			return
		}
		if !cl.checkRegistration(pos, k+"registration", c.Registration) || !cl.checkSent(pos, k+"secret", c) {
			return
		}
		if !cl.add(pos, k, c, src) {
			return
		}
		cl.list = append(cl.list, c)
	}
}
