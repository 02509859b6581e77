package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/scripts"
)

func TestLuaLoadAndStatus(t *testing.T) {
	srv := redistest.Start(t)
	v := "v" + strconv.Itoa(scripts.Version())

	out := mustCLI(t, srv.URL(), "lua", "status")
	want := "library:   " + scripts.LibraryName + "\nloaded:    not loaded (run: edgectl lua load)\nembedded:  " + v + "\nfunctions: -\n"
	if out != want {
		t.Errorf("status before load:\n%s\nwant:\n%s", out, want)
	}

	out = mustCLI(t, srv.URL(), "lua", "load")
	if want := "library " + scripts.LibraryName + ": loaded " + v + " (embedded)\n"; out != want {
		t.Errorf("load = %q, want %q", out, want)
	}
	out = mustCLI(t, srv.URL(), "lua", "load")
	if want := "library " + scripts.LibraryName + ": replaced " + v + " with " + v + " (embedded)\n"; out != want {
		t.Errorf("second load = %q, want %q", out, want)
	}

	out = mustCLI(t, srv.URL(), "lua", "status")
	for _, fn := range []string{scripts.FnSendControl, scripts.FnSyncBatch, scripts.FnSyncMeasurement, scripts.FnVersion,
		scripts.FnTakeControls, scripts.FnControlResult, scripts.FnSetQuality} {
		if !strings.Contains(out, fn) {
			t.Errorf("status lacks function %s:\n%s", fn, out)
		}
	}
	if !strings.Contains(out, "loaded:    "+v+"\n") {
		t.Errorf("status after load:\n%s", out)
	}
}

func TestLuaLoadFile(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	dir := t.TempDir()

	// A field fix: the embedded library with a higher version.
	next := scripts.Version() + 1
	code := strings.Replace(scripts.Source(), "local VERSION = "+strconv.Itoa(scripts.Version()),
		"local VERSION = "+strconv.Itoa(next), 1)
	fix := filepath.Join(dir, "fix.lua")
	if err := os.WriteFile(fix, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, srv.URL(), "lua", "load")
	out := mustCLI(t, srv.URL(), "lua", "load", fix)
	want := "library " + scripts.LibraryName + ": loaded v" + strconv.Itoa(next) + " from " + fix +
		"\nreplaced v" + strconv.Itoa(scripts.Version()) + "; embedded is v" + strconv.Itoa(scripts.Version()) + "\n"
	if out != want {
		t.Errorf("load file:\n%s\nwant:\n%s", out, want)
	}
	got := redistest.Do(t, c, "FCALL_RO", scripts.FnVersion, "0")
	if n, _ := got.AsInt64(); n != int64(next) {
		t.Errorf("version after load = %d, want %d", n, next)
	}
	out = mustCLI(t, srv.URL(), "lua", "status")
	if !strings.Contains(out, "newer than embedded") {
		t.Errorf("status:\n%s", out)
	}

	// A file Redis refuses, a file that is not a library, a missing file.
	bad := filepath.Join(dir, "bad.lua")
	if err := os.WriteFile(bad, []byte("#!lua name=voltedge\nthis is not lua\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notLib := filepath.Join(dir, "plain.lua")
	if err := os.WriteFile(notLib, []byte("return 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for file, msg := range map[string]string{
		bad:                               "function load " + bad,
		notLib:                            "does not start with",
		filepath.Join(dir, "missing.lua"): "no such file",
	} {
		_, errOut, code := cli(t, srv.URL(), "lua", "load", file)
		if code != 1 || !strings.HasPrefix(errOut, "edgectl lua load: ") || !strings.Contains(errOut, msg) {
			t.Errorf("load %s: exit %d, stderr %q", file, code, errOut)
		}
	}
	// The refused file left the fix in place.
	if n, _ := redistest.Do(t, c, "FCALL_RO", scripts.FnVersion, "0").AsInt64(); n != int64(next) {
		t.Errorf("version after refused load = %d", n)
	}
}
