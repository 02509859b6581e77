// Package config loads modsrv.toml: the common service settings, access
// control (read_open, bearer tokens, users with bcrypt hashes, the login
// rate), the control wait, the WebSocket origins and the history store.
//
// Loading is strict like every VoltEdge configuration: unknown keys, wrong
// types and invalid values are refused with file:line:column and key. So
// are weak bearer tokens and, outside a demo, users whose password is a
// well-known demo password.
package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"golang.org/x/crypto/bcrypt"

	"github.com/voltedge/voltedge/internal/conf"
	"github.com/voltedge/voltedge/modsrv/auth"
)

// Defaults of modsrv.toml.
const (
	DefaultListen         = ":8002"
	DefaultControlTimeout = 10 * time.Second
	DefaultLoginRate      = 5
	DefaultSessionTTL     = 12 * time.Hour
	DefaultMaxSessions    = 1000

	// DefaultHTTPReadTimeout bounds reading one request, headers included:
	// a partial request is dropped after it.
	DefaultHTTPReadTimeout = 10 * time.Second
	// DefaultHTTPIdleTimeout closes keep-alive connections idle that long.
	DefaultHTTPIdleTimeout = 60 * time.Second
	// DefaultHTTPMaxConns bounds the HTTP connections served at once.
	DefaultHTTPMaxConns = 4096
	// DefaultHTTPMaxConnsPerIP bounds the connections of one remote address
	// (WebSocket clients included).
	DefaultHTTPMaxConnsPerIP = 100
	// DefaultWSMaxClients bounds the WebSocket clients.
	DefaultWSMaxClients = 1000
	// DefaultWSMaxClientsPerIP bounds the anonymous WebSocket clients of
	// one remote address.
	DefaultWSMaxClientsPerIP = 50
	// DefaultWSMaxSubscriptions bounds the subscriptions of all WebSocket
	// clients together.
	DefaultWSMaxSubscriptions = 100000

	// MinControlTimeout and MaxControlTimeout bound control_timeout and the
	// ?timeout= of a control request.
	MinControlTimeout = 100 * time.Millisecond
	MaxControlTimeout = 5 * time.Minute
	// MinTokenLength is the shortest bearer token accepted.
	MinTokenLength = auth.MinTokenLength
	// MaxName bounds token and user names.
	MaxName = 64
)

// Config is modsrv.toml.
type Config struct {
	conf.ServiceConfig

	// ReadOpen lets GET requests through without credentials (default
	// true, for a trusted LAN). Writes always need a token or a session.
	ReadOpen bool `toml:"read_open"`
	// ControlTimeout is how long a control request waits for comsrv's
	// outcome unless it asks for another ?timeout= (default 10s).
	ControlTimeout conf.Duration `toml:"control_timeout"`
	// WSOrigins lists the Origin values a WebSocket upgrade is accepted
	// from besides the server's own host; "*" accepts any. Empty: same
	// origin only.
	WSOrigins []string `toml:"ws_origins"`
	// Hostnames are the names (besides IP addresses and localhost) by which
	// modsrv may be addressed: requests with another Host are refused. This
	// stops a web page from reading the open API through DNS rebinding.
	// Empty (the default) is read as ["localhost"]: IP addresses and
	// localhost only.
	Hostnames []string `toml:"hostnames"`
	// Tokens are the bearer tokens for other systems.
	Tokens []Token `toml:"token"`
	// Users can log in with a password (POST /login).
	Users []User `toml:"user"`
	// LoginRate is how many login attempts one remote IP may make per
	// minute (default 5).
	LoginRate int `toml:"login_rate"`
	// SessionTTL is how long a login session lasts (default 12h).
	SessionTTL conf.Duration `toml:"session_ttl"`
	// MaxSessions bounds the sessions kept at once (default 1000); the
	// oldest is ended when a login would exceed it.
	MaxSessions int `toml:"max_sessions"`
	// HTTPReadTimeout bounds reading one request, headers and body
	// (default 10s): a partial request is dropped after it.
	HTTPReadTimeout conf.Duration `toml:"http_read_timeout"`
	// HTTPIdleTimeout closes keep-alive connections idle that long (default 60s).
	HTTPIdleTimeout conf.Duration `toml:"http_idle_timeout"`
	// HTTPMaxConns bounds the HTTP connections served at once (default 4096).
	HTTPMaxConns int `toml:"http_max_conns"`
	// HTTPMaxConnsPerIP bounds the open connections of one remote address,
	// WebSocket clients included (default 100).
	HTTPMaxConnsPerIP int `toml:"http_max_conns_per_ip"`
	// WSMaxClients bounds the WebSocket clients (default 1000).
	WSMaxClients int `toml:"ws_max_clients"`
	// WSReservedClients of WSMaxClients are kept for clients with
	// credentials (default a tenth of ws_max_clients).
	WSReservedClients int `toml:"ws_reserved_clients"`
	// WSMaxClientsPerIP bounds the anonymous WebSocket clients of one remote
	// address (default 50).
	WSMaxClientsPerIP int `toml:"ws_max_clients_per_ip"`
	// WSMaxSubscriptions bounds the model and channel subscriptions of all
	// WebSocket clients together (default 100000).
	WSMaxSubscriptions int `toml:"ws_max_subscriptions"`
	// History is the store GET /history and /export read from.
	History History `toml:"history"`

	// File is the path the configuration was read from.
	File string `toml:"-"`
}

// Token is one [[token]]: a name (reported as the user of its requests)
// and the secret sent as "Authorization: Bearer <token>".
type Token struct {
	Name  string `toml:"name"`
	Token string `toml:"token"`
}

// User is one [[user]]: a name and the bcrypt hash of the password.
type User struct {
	Name   string `toml:"name"`
	Bcrypt string `toml:"bcrypt"`
}

// History is the [history] table.
type History struct {
	// MySQLDSN is the MySQL data source netsrv writes history to; empty
	// means no history (the /history routes and /export answer 503).
	// modsrv only reads: a user with SELECT on the database is enough.
	MySQLDSN string `toml:"mysql_dsn"`
	// Site is the box whose rows modsrv shows (netsrv's site); default the
	// host name with every character outside [A-Za-z0-9_.-] replaced by
	// '-', as netsrv does.
	Site string `toml:"site"`
	// ExportMaxRows caps the rows of one GET /export (default 1,000,000);
	// the last row of a cut export says so.
	ExportMaxRows int `toml:"export_max_rows"`
	// ExportTmpDir is where an Excel export keeps its sheet while it is
	// written (default: the system's temporary directory).
	ExportTmpDir string `toml:"export_tmp_dir"`
}

// Defaults and bounds of [history].
const (
	DefaultExportMaxRows = 1_000_000
	MaxExportMaxRows     = 5_000_000
)

// DefaultSite is the host name made a site id the way netsrv does.
func DefaultSite() string { return conf.HostSite() }

// checkHistory fills in and checks [history].
func (c *Config) checkHistory(pos *conf.Positions, errs *conf.Errors) {
	h := &c.History
	if h.MySQLDSN != "" {
		if cfg, err := mysql.ParseDSN(h.MySQLDSN); err != nil {
			// The parse error may quote the DSN, password included.
			errs.Addf(pos, "history.mysql_dsn", "not a DSN like \"user:password@tcp(127.0.0.1:3306)/voltedge\"")
		} else if cfg.DBName == "" {
			errs.Addf(pos, "history.mysql_dsn", "names no database (…/voltedge)")
		}
	}
	if !pos.Defined("history.site") {
		h.Site = DefaultSite()
	}
	if !conf.ValidSite(h.Site) {
		errs.Addf(pos, "history.site", "%q is not a site id (1..64 of A-Z a-z 0-9 _ . -)", h.Site)
	}
	if !pos.Defined("history.export_max_rows") {
		h.ExportMaxRows = DefaultExportMaxRows
	}
	if h.ExportMaxRows < 1 || h.ExportMaxRows > MaxExportMaxRows {
		errs.Addf(pos, "history.export_max_rows", "%d is out of range (1..%d)", h.ExportMaxRows, MaxExportMaxRows)
	}
}

// Options change how a configuration is judged; the zero value is the
// strict judgement of Load and Parse.
type Options struct {
	// Demo accepts users whose password is one of auth.DemoPasswords
	// (modsrv -demo); without it they are refused.
	Demo bool
}

// Load reads and validates modsrv.toml at path.
func Load(path string) (*Config, error) { return Options{}.Load(path) }

// Parse is Load for a document in memory; file is only used in errors.
func Parse(file string, data []byte) (*Config, error) { return Options{}.Parse(file, data) }

// Load reads and validates modsrv.toml at path under o.
func (o Options) Load(path string) (*Config, error) {
	cfg := &Config{File: path}
	pos, err := conf.Decode(path, cfg)
	if err != nil {
		return nil, err
	}
	if err := cfg.check(pos, o); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Parse is Load for a document in memory; file is only used in errors.
func (o Options) Parse(file string, data []byte) (*Config, error) {
	cfg := &Config{File: file}
	pos, err := conf.DecodeData(file, data, cfg)
	if err != nil {
		return nil, err
	}
	if err := cfg.check(pos, o); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *Config) check(pos *conf.Positions, o Options) error {
	var errs conf.Errors
	errs.Add(c.ServiceConfig.Check(pos))
	if !pos.Defined("listen") {
		c.Listen = DefaultListen
	}
	if c.Listen == "" {
		errs.Addf(pos, "listen", "must not be empty")
	}
	if !pos.Defined("read_open") {
		c.ReadOpen = true
	}
	if !pos.Defined("control_timeout") {
		c.ControlTimeout.Duration = DefaultControlTimeout
	}
	if d := c.ControlTimeout.Duration; d < MinControlTimeout || d > MaxControlTimeout {
		errs.Addf(pos, "control_timeout", "%s is out of range (%s..%s)", d, MinControlTimeout, MaxControlTimeout)
	}
	if !pos.Defined("login_rate") {
		c.LoginRate = DefaultLoginRate
	}
	if c.LoginRate < 1 || c.LoginRate > 1000 {
		errs.Addf(pos, "login_rate", "%d is out of range (1..1000 attempts per minute)", c.LoginRate)
	}
	if !pos.Defined("session_ttl") {
		c.SessionTTL.Duration = DefaultSessionTTL
	}
	if d := c.SessionTTL.Duration; d < time.Minute || d > 30*24*time.Hour {
		errs.Addf(pos, "session_ttl", "%s is out of range (1m..720h)", d)
	}
	if !pos.Defined("max_sessions") {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.MaxSessions < 1 || c.MaxSessions > 100000 {
		errs.Addf(pos, "max_sessions", "%d is out of range (1..100000)", c.MaxSessions)
	}
	c.checkLimits(pos, &errs)
	c.checkHistory(pos, &errs)
	for i, o := range c.WSOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			errs.Addf(pos, fmt.Sprintf("ws_origins[%d]", i), "%q is not an origin (want \"*\" or e.g. \"http://scada.local:8080\")", o)
		}
	}
	for i, h := range c.Hostnames {
		if h == "" || strings.ContainsAny(h, ":/ ") {
			errs.Addf(pos, fmt.Sprintf("hostnames[%d]", i), "%q is not a host name (no port, scheme or path)", h)
		}
	}
	if len(c.Hostnames) == 0 {
		c.Hostnames = []string{"localhost"}
	}
	names := map[string]string{}
	for i, t := range c.Tokens {
		p := fmt.Sprintf("token[%d].", i)
		checkName(pos, &errs, p+"name", t.Name, names)
		weak := auth.CheckTokenStrength(t.Token)
		switch {
		case weak != nil:
			errs.Addf(pos, p+"token", "%v", weak)
		case len(t.Token) > 256:
			errs.Addf(pos, p+"token", "must be at most 256 characters")
		case strings.ContainsFunc(t.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			errs.Addf(pos, p+"token", "must not contain spaces or control characters")
		}
	}
	for i, u := range c.Users {
		p := fmt.Sprintf("user[%d].", i)
		checkName(pos, &errs, p+"name", u.Name, names)
		if _, err := bcrypt.Cost([]byte(u.Bcrypt)); err != nil {
			errs.Addf(pos, p+"bcrypt", "not a bcrypt hash (%v); make one with: modsrv -hash-password", err)
		} else if pw, demo := auth.DemoPassword(u.Bcrypt); demo && !o.Demo {
			errs.Addf(pos, p+"bcrypt", "the password is %q, a well-known demo password: choose another (hash it with: modsrv -hash-password), or run modsrv -demo", pw)
		}
	}
	return errs.Err()
}

// checkLimits fills in and checks the HTTP and WebSocket limits.
func (c *Config) checkLimits(pos *conf.Positions, errs *conf.Errors) {
	dur := func(key string, d *conf.Duration, def, lo, hi time.Duration) {
		if !pos.Defined(key) {
			d.Duration = def
		}
		if d.Duration < lo || d.Duration > hi {
			errs.Addf(pos, key, "%s is out of range (%s..%s)", d.Duration, lo, hi)
		}
	}
	num := func(key string, n *int, def, lo, hi int) {
		if !pos.Defined(key) {
			*n = def
		}
		if *n < lo || *n > hi {
			errs.Addf(pos, key, "%d is out of range (%d..%d)", *n, lo, hi)
		}
	}
	dur("http_read_timeout", &c.HTTPReadTimeout, DefaultHTTPReadTimeout, 100*time.Millisecond, 5*time.Minute)
	dur("http_idle_timeout", &c.HTTPIdleTimeout, DefaultHTTPIdleTimeout, 100*time.Millisecond, time.Hour)
	num("http_max_conns", &c.HTTPMaxConns, DefaultHTTPMaxConns, 16, 1000000)
	num("http_max_conns_per_ip", &c.HTTPMaxConnsPerIP, DefaultHTTPMaxConnsPerIP, 1, 1000000)
	num("ws_max_clients", &c.WSMaxClients, DefaultWSMaxClients, 1, 100000)
	num("ws_reserved_clients", &c.WSReservedClients, c.WSMaxClients/10, 0, c.WSMaxClients)
	num("ws_max_clients_per_ip", &c.WSMaxClientsPerIP, DefaultWSMaxClientsPerIP, 1, 100000)
	num("ws_max_subscriptions", &c.WSMaxSubscriptions, DefaultWSMaxSubscriptions, 1, 10000000)
}

// checkName validates a token or user name and that it is unique among both.
func checkName(pos *conf.Positions, errs *conf.Errors, key, name string, seen map[string]string) {
	if name == "" || len(name) > MaxName || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		errs.Addf(pos, key, "must be 1..%d characters without control characters", MaxName)
		return
	}
	if prev, dup := seen[name]; dup {
		errs.Addf(pos, key, "name %q is already used by %s", name, prev)
		return
	}
	seen[name] = strings.TrimSuffix(key, ".name")
}
