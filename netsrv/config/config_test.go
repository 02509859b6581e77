package config

import (
	"strings"
	"testing"
	"time"
)

// TestExampleConfig loads config/netsrv.toml, the file the demo uses.
func TestExampleConfig(t *testing.T) {
	c, err := Load("../../config/netsrv.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Site != "demo" || c.Listen != ":8004" || c.Spool.MaxBytes != 1<<30 || c.Spool.SyncEvery.Duration != 500*time.Millisecond ||
		len(c.Upload.Streams) != 4 || c.Upload.Consumer != "demo" || len(c.Sample) != 1 || c.MySQL.MaxOpenConns != 4 {
		t.Fatalf("%+v", c)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("n.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Site == "" || c.MySQL.DSN != "" || c.MySQL.RetentionDays != 30 || c.Spool.Dir != DefaultSpoolDir ||
		c.Upload.BatchEntries != DefaultBatchEntries || c.Upload.RetryEvery.Duration != DefaultRetryEvery {
		t.Fatalf("%+v", c)
	}
}

func TestErrors(t *testing.T) {
	doc := `site = "a b"
[mysql]
dsn = "root:hunter2@tcp(127.0.0.1:3306"
max_open_conns = 0
[spool]
max_size = "1MB"
sync_every = "2s"
[upload]
streams = ["data", "logs"]
[[sample]]
points = "m:*"
mode = "sometimes"
`
	_, err := Parse("n.toml", []byte(doc))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{"n.toml:1:", "site", "mysql.dsn", "max_open_conns", "spool.max_size", "64MiB", "sync_every", `"logs" is unknown`, "sample rule 1", "unknown mode"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "hunter2") {
		t.Errorf("the password is in the error:\n%s", msg)
	}
}

func TestRedacted(t *testing.T) {
	m := MySQL{DSN: "netsrv:s3cret@tcp(db:3306)/voltedge"}
	if r := m.Redacted(); strings.Contains(r, "s3cret") || !strings.Contains(r, "netsrv:***@tcp(db:3306)/voltedge") {
		t.Fatalf("redacted %q", r)
	}
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{"1GiB": 1 << 30, "500MB": 500e6, "64MiB": 64 << 20, "1024": 1024} {
		if n, err := ParseSize(s); err != nil || n != want {
			t.Errorf("%s: %d %v", s, n, err)
		}
	}
	for _, s := range []string{"", "1TB", "-1GB", "GB", "9999999999GiB"} {
		if _, err := ParseSize(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}
