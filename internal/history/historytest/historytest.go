// Package historytest gives each test its own MariaDB/MySQL database, so that
// no test ever reads, writes or drops a database it did not create.
package historytest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// DefaultServerDSN is the server used when VOLTEDGE_MYSQL_DSN is not set: a
// local MariaDB reachable as root without a password.
const DefaultServerDSN = "root@tcp(127.0.0.1:3306)/"

// DSN creates a database with a random name (ve_test_<hex>) on the server
// named by VOLTEDGE_MYSQL_DSN (DefaultServerDSN when unset), drops it when the
// test ends and returns a DSN selecting it. If the server is unreachable the
// test is skipped with a clear message, unless the CI environment variable is
// set (CI=true) or VOLTEDGE_REQUIRE_MYSQL=1 (.ci/run), in which case it fails.
func DSN(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("VOLTEDGE_MYSQL_DSN")
	if base == "" {
		base = DefaultServerDSN
	}
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		tb.Fatalf("historytest: VOLTEDGE_MYSQL_DSN: %v", err)
	}
	cfg.DBName = ""
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Second
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		tb.Fatalf("historytest: %v", err)
	}
	admin := sql.OpenDB(connector)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		msg := "historytest: MariaDB/MySQL not reachable at " + cfg.Addr + " (set VOLTEDGE_MYSQL_DSN): " + err.Error()
		if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" || os.Getenv("VOLTEDGE_REQUIRE_MYSQL") == "1" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		tb.Fatalf("historytest: %v", err)
	}
	name := "ve_test_" + hex.EncodeToString(raw[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4"); err != nil {
		admin.Close()
		tb.Fatalf("historytest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			tb.Errorf("historytest: drop database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}
