package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/redistest"
)

// testNow is the clock of every test run: 2024-11-21 12:00:00 UTC.
var testNow = time.Date(2024, 11, 21, 12, 0, 0, 0, time.UTC)

// cli runs edgectl in-process against url and returns its output and exit status.
func cli(t *testing.T, url string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := &app{
		stdout: &out,
		stderr: &errOut,
		now:    func() time.Time { return testNow },
		loc:    time.UTC,
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if url != "" {
		args = append([]string{"-redis", url}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code = a.main(ctx, args)
	return out.String(), errOut.String(), code
}

// mustCLI runs edgectl and fails the test unless it exits 0.
func mustCLI(t *testing.T, url string, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, url, args...)
	if code != 0 {
		t.Fatalf("edgectl %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
	}
	return out
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		code    int
		inError string
	}{
		{nil, 2, "no command given"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"-nosuchflag"}, 2, "flag provided but not defined"},
		{[]string{"-h"}, 0, "usage: edgectl"},
		{[]string{"help"}, 0, "commands:"},
		{[]string{"lua"}, 2, "usage: edgectl lua COMMAND"},
		{[]string{"lua", "reload"}, 2, `unknown command "reload"`},
		{[]string{"lua", "status", "extra"}, 2, "usage: edgectl lua status"},
		{[]string{"lua", "load", "a.lua", "b.lua"}, 2, "want at most one FILE"},
		{[]string{"send", "m", "c"}, 2, "want MODEL CONTROL VALUE, got 2 arguments"},
		{[]string{"send", "m:x", "c", "1"}, 2, `invalid model id "m:x"`},
		{[]string{"send", "m", "c", "1", "-ttl", "0s"}, 2, "-ttl must be at least 1ms"},
		{[]string{"send", "-h"}, 0, "usage: edgectl send MODEL CONTROL VALUE"},
		{[]string{"send", "m", "c", "1", "-wait", "-1s"}, 2, "-wait must not be negative"},
		{[]string{"send", "m", "c", "1", "-wait", "1s", "-no-wait"}, 2, "-wait and -no-wait exclude each other"},
		{[]string{"reload", "now"}, 2, `unexpected argument "now"`},
		{[]string{"reload", "-wait", "0s"}, 2, "-wait must be positive"},
		{[]string{"reload", "-h"}, 0, "usage: edgectl reload [-wait 10s]"},
		{[]string{"help"}, 0, "reload     ask comsrv to reload"},
		{[]string{"status", "-sort", "age"}, 2, "-sort must be id or online"},
		{[]string{"status", "-bogus"}, 2, "usage: edgectl status"},
		{[]string{"monitor", "-interval", "0s"}, 2, "-interval must be positive"},
		{[]string{"monitor", "x"}, 2, `unexpected argument "x"`},
	} {
		out, errOut, code := cli(t, "redis://127.0.0.1:1", tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.inError) {
			t.Errorf("edgectl %v: exit %d, stderr %q; want exit %d with %q (stdout %q)", tc.args, code, errOut, tc.code, tc.inError, out)
		}
	}
}

func TestParseInterleaved(t *testing.T) {
	a := &app{stderr: io.Discard}
	for _, tc := range []struct {
		args []string
		pos  string
		ttl  time.Duration
	}{
		{[]string{"m", "c", "1"}, "m c 1", 30 * time.Second},
		{[]string{"-ttl", "5s", "m", "c", "1"}, "m c 1", 5 * time.Second},
		{[]string{"m", "c", "1", "-ttl", "5s"}, "m c 1", 5 * time.Second},
		{[]string{"m", "-ttl=2s", "c", "-5"}, "m c -5", 2 * time.Second},
		{[]string{"m", "c", "-1.5e3", "-ttl", "1s"}, "m c -1.5e3", time.Second},
		{[]string{"m", "--", "-c", "-x"}, "m -c -x", 30 * time.Second},
	} {
		fs := a.flags("send", "", "")
		ttl := fs.Duration("ttl", 30*time.Second, "")
		pos, err := a.parse(fs, tc.args)
		if err != nil || strings.Join(pos, " ") != tc.pos || *ttl != tc.ttl {
			t.Errorf("parse %q = %q, ttl %v, %v; want %q, %v", tc.args, pos, *ttl, err, tc.pos, tc.ttl)
		}
	}
}

func TestRedisUnreachable(t *testing.T) {
	_, errOut, code := cli(t, "redis://127.0.0.1:1", "status")
	if code != 1 || !strings.HasPrefix(errOut, "edgectl status: ") || !strings.Contains(errOut, "127.0.0.1:1") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestRedisFromEnvironment(t *testing.T) {
	srv := redistest.Start(t)
	t.Setenv(envRedis, srv.URL())
	out := mustCLI(t, "", "status")
	if !strings.HasPrefix(out, "0 channels, 0 online, 0 offline\n") {
		t.Errorf("status = %q", out)
	}
	// -redis after the command name wins over the environment.
	t.Setenv(envRedis, "redis://127.0.0.1:1")
	if out := mustCLI(t, "", "status", "-redis", srv.URL()); !strings.Contains(out, "0 channels") {
		t.Errorf("status = %q", out)
	}
}
