package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/voltedge/voltedge/internal/conf"
)

func TestExampleConfig(t *testing.T) {
	c, err := Load("../../config/modsrv.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":8002" || !c.ReadOpen || c.ControlTimeout.Duration != 10*time.Second || c.LoginRate != 5 ||
		c.RedisURL != conf.DefaultRedisURL || c.History.MySQLDSN != "" || len(c.WSOrigins) != 0 {
		t.Fatalf("got %+v", c)
	}
	// No shipped configuration may hold a working credential.
	if len(c.Users) != 0 || len(c.Tokens) != 0 {
		t.Fatalf("the example configuration has users %+v and tokens %+v", c.Users, c.Tokens)
	}
}

// TestDemoPasswordRefused: a user whose hash is of a well-known demo
// password is refused at its position, unless the demo is allowed.
func TestDemoPasswordRefused(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("demo"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte("[[user]]\nname = \"op\"\nbcrypt = \"" + string(hash) + "\"\n")
	_, err = Parse("d.toml", doc)
	if err == nil || !strings.Contains(err.Error(), `d.toml:3:10: key "user[0].bcrypt": the password is "demo", a well-known demo password`) {
		t.Fatalf("got %v", err)
	}
	c, err := Options{Demo: true}.Parse("d.toml", doc)
	if err != nil || len(c.Users) != 1 {
		t.Fatalf("with Demo: %+v %v", c, err)
	}
}

// TestHostnamesDefault: without hostnames only IP addresses and localhost
// may address modsrv (the API refuses other Hosts against DNS rebinding).
func TestHostnamesDefault(t *testing.T) {
	for _, doc := range []string{"", "hostnames = []\n"} {
		c, err := Parse("h.toml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Hostnames) != 1 || c.Hostnames[0] != "localhost" {
			t.Fatalf("%q: hostnames %q", doc, c.Hostnames)
		}
	}
	c, err := Parse("h.toml", []byte("hostnames = [\"edge42.plant.local\"]\n"))
	if err != nil || len(c.Hostnames) != 1 || c.Hostnames[0] != "edge42.plant.local" {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("m.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != DefaultListen || !c.ReadOpen || c.ControlTimeout.Duration != DefaultControlTimeout ||
		c.LoginRate != DefaultLoginRate || c.SessionTTL.Duration != DefaultSessionTTL || c.MaxSessions != DefaultMaxSessions ||
		c.LogLevel != "info" || c.RedisURL != conf.DefaultRedisURL {
		t.Fatalf("got %+v", c)
	}
	c, err = Parse("m.toml", []byte("read_open = false\n"))
	if err != nil || c.ReadOpen {
		t.Fatalf("read_open = false: %+v %v", c, err)
	}
}

func TestFull(t *testing.T) {
	// htpasswd -bnBC 10 "" secret writes the $2y$ variant; it is accepted.
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	y := "$2y$" + string(hash[4:])
	doc := `
listen = "127.0.0.1:9000"
control_timeout = "2s"
ws_origins = ["*", "http://scada.local:8080", "https://x.example/"]
login_rate = 10
session_ttl = "1h"
max_sessions = 5
[[token]]
name = "scada"
token = "0123456789abcdef0123456789abcdef"
[[user]]
name = "op"
bcrypt = "` + string(hash) + `"
[[user]]
name = "op2"
bcrypt = "` + y + `"
[history]
mysql_dsn = "u:p@tcp(db:3306)/voltedge"
site = "box-7"
export_max_rows = 2000
`
	c, err := Parse("f.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9000" || c.ControlTimeout.Duration != 2*time.Second || len(c.WSOrigins) != 3 ||
		c.LoginRate != 10 || c.SessionTTL.Duration != time.Hour || c.MaxSessions != 5 ||
		c.Tokens[0].Name != "scada" || c.Users[1].Name != "op2" || c.History.MySQLDSN == "" ||
		c.History.Site != "box-7" || c.History.ExportMaxRows != 2000 {
		t.Fatalf("got %+v", c)
	}
	if bcrypt.CompareHashAndPassword([]byte(y), []byte("secret")) != nil {
		t.Fatal("$2y$ hash does not verify")
	}
}

func TestErrors(t *testing.T) {
	tests := []struct{ doc, want string }{
		{"bogus = 1\n", `e.toml:1:1: key "bogus": unknown key`},
		{"[history]\nmysql = \"\"\n", `e.toml:2:1: key "history.mysql": unknown key`},
		{"[[user]]\nname = \"a\"\npassword = \"x\"\n", `e.toml:3:1: key "user[0].password": unknown key`},
		{"read_open = \"yes\"\n", `e.toml:1:13: key "read_open": expected a boolean`},
		{"control_timeout = \"1ms\"\n", `e.toml:1:19: key "control_timeout": 1ms is out of range (100ms..5m0s)`},
		{"control_timeout = \"10\"\n", `e.toml:1:19: key "control_timeout": invalid duration "10"`},
		{"login_rate = 0\n", `e.toml:1:14: key "login_rate": 0 is out of range`},
		{"session_ttl = \"1s\"\n", `e.toml:1:15: key "session_ttl": 1s is out of range`},
		{"max_sessions = 0\n", `e.toml:1:16: key "max_sessions": 0 is out of range`},
		{"listen = \"\"\n", `e.toml:1:10: key "listen": must not be empty`},
		{"log_level = \"loud\"\n", `e.toml:1:13: key "log_level": unknown log level "loud"`},
		{"ws_origins = [\"*\", \"scada.local\"]\n", `e.toml:1:20: key "ws_origins[1]": "scada.local" is not an origin`},
		{"ws_origins = [\"http://a/path\"]\n", `key "ws_origins[0]": "http://a/path" is not an origin`},
		{"[[token]]\nname = \"a\"\ntoken = \"short\"\n", `e.toml:3:9: key "token[0].token": weak bearer token: must be at least 32 characters`},
		{"[[token]]\nname = \"a\"\ntoken = \"aaaaaaaaaaaaaaaa\"\n", `e.toml:3:9: key "token[0].token": weak bearer token: must be at least 32 characters`},
		{"[[token]]\nname = \"a\"\ntoken = \"" + strings.Repeat("ab", 20) + "\"\n", `e.toml:3:9: key "token[0].token": weak bearer token: has only 2 distinct characters`},
		{"[[token]]\nname = \"a\"\ntoken = \"0123456789abcdef 0123456789abcdef\"\n", `key "token[0].token": must not contain spaces`},
		{"[[token]]\nname = \"\"\ntoken = \"0123456789abcdef0123456789abcdef\"\n", `e.toml:2:8: key "token[0].name": must be 1..64 characters`},
		{"[[token]]\nname = \"a\"\ntoken = \"0123456789abcdef0123456789abcdef\"\n[[user]]\nname = \"a\"\nbcrypt = \"$2a$04$abcdefghijklmnopqrstuu5Lr3.sF8gY8gZ9ZyjL0vIWf.wFUSZ.a\"\n",
			`e.toml:5:8: key "user[0].name": name "a" is already used by token[0]`},
		{"[[user]]\nname = \"b\"\nbcrypt = \"plain\"\n", `e.toml:3:10: key "user[0].bcrypt": not a bcrypt hash`},
		{"[history]\nmysql_dsn = \"u:secret@tcp(db:3306\"\n", `e.toml:2:13: key "history.mysql_dsn": not a DSN`},
		{"[history]\nmysql_dsn = \"u:secret@tcp(db:3306)/\"\n", `key "history.mysql_dsn": names no database`},
		{"[history]\nsite = \"a b\"\n", `e.toml:2:8: key "history.site": "a b" is not a site id`},
		{"[history]\nexport_max_rows = 0\n", `e.toml:2:19: key "history.export_max_rows": 0 is out of range`},
	}
	for _, tc := range tests {
		_, err := Parse("e.toml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.doc, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: the error shows the password: %v", tc.doc, err)
		}
	}
}

func TestHistoryDefaults(t *testing.T) {
	c, err := Parse("d.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.History.Site != DefaultSite() || c.History.ExportMaxRows != DefaultExportMaxRows || !conf.ValidSite(c.History.Site) {
		t.Fatalf("history defaults %+v", c.History)
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "none.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}
