package lualib_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/scripts"
)

// withVersion returns the embedded source with its version line changed to v
// (or removed when v < 0).
func withVersion(t *testing.T, v int) string {
	t.Helper()
	old := "local VERSION = " + strconv.Itoa(scripts.Version())
	src := scripts.Source()
	if !strings.Contains(src, old) {
		t.Fatalf("source has no %q line", old)
	}
	repl := "local VERSION = " + strconv.Itoa(v)
	if v < 0 {
		repl = "local VERSION = 'custom'"
	}
	return strings.Replace(src, old, repl, 1)
}

func loadedVersion(t *testing.T, c rueidis.Client) int64 {
	t.Helper()
	v, err := c.Do(context.Background(), c.B().FcallRo().Function(scripts.FnVersion).Numkeys(0).Build()).AsInt64()
	if err != nil {
		t.Fatalf("voltedge_version: %v", err)
	}
	return v
}

func TestStatusEmpty(t *testing.T) {
	c := redistest.Start(t).Client(t)
	info, err := lualib.Status(context.Background(), c)
	want := lualib.Info{Name: scripts.LibraryName, Embedded: scripts.Version()}
	if err != nil || info != want {
		t.Fatalf("Status = %+v, %v; want %+v", info, err, want)
	}
}

func TestEnsure(t *testing.T) {
	emb := scripts.Version()
	tests := []struct {
		name      string
		preload   string // code loaded by hand before Ensure, "" for none
		want      lualib.Info
		wantFcall int64 // voltedge_version afterwards
	}{
		{"empty server", "", lualib.Info{Loaded: emb, Previous: 0, Action: lualib.ActionLoaded}, int64(emb)},
		{"same version", scripts.Source(), lualib.Info{Loaded: emb, Previous: emb, Action: lualib.ActionKept}, int64(emb)},
		{"older", withVersion(t, 0), lualib.Info{Loaded: emb, Previous: 0, Action: lualib.ActionUpgraded}, int64(emb)},
		{"newer", withVersion(t, emb+1), lualib.Info{Loaded: emb + 1, Previous: emb + 1, Action: lualib.ActionKeptNewer}, int64(emb + 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := redistest.Start(t).Client(t)
			if tt.preload != "" {
				redistest.Do(t, c, "FUNCTION", "LOAD", tt.preload)
			}
			info, err := lualib.Ensure(context.Background(), c)
			tt.want.Name, tt.want.Embedded = scripts.LibraryName, emb
			if err != nil || info != tt.want {
				t.Fatalf("Ensure = %+v, %v; want %+v", info, err, tt.want)
			}
			if v := loadedVersion(t, c); v != tt.wantFcall {
				t.Errorf("voltedge_version = %d, want %d", v, tt.wantFcall)
			}
			// A second Ensure changes nothing.
			again, err := lualib.Ensure(context.Background(), c)
			if err != nil || again.Loaded != tt.want.Loaded || (again.Action != lualib.ActionKept && again.Action != lualib.ActionKeptNewer) {
				t.Errorf("second Ensure = %+v, %v", again, err)
			}
		})
	}
}

func TestEnsureUpgradesOlderRelease(t *testing.T) {
	// "older" in TestEnsure uses VERSION = 0 (older than any release);
	// check an ordinary older version too when the embedded one allows it.
	if scripts.Version() < 2 {
		t.Skip("embedded version is 1: no older positive version to test")
	}
	c := redistest.Start(t).Client(t)
	redistest.Do(t, c, "FUNCTION", "LOAD", withVersion(t, scripts.Version()-1))
	info, err := lualib.Ensure(context.Background(), c)
	if err != nil || info.Action != lualib.ActionUpgraded || info.Previous != scripts.Version()-1 {
		t.Fatalf("Ensure = %+v, %v", info, err)
	}
}

func TestEnsureKeepsUnknownVersion(t *testing.T) {
	c := redistest.Start(t).Client(t)
	redistest.Do(t, c, "FUNCTION", "LOAD", withVersion(t, -1))
	info, err := lualib.Ensure(context.Background(), c)
	if err != nil || info.Action != lualib.ActionKeptUnknown || info.Loaded != lualib.VersionUnknown {
		t.Fatalf("Ensure = %+v, %v", info, err)
	}
	code, _ := c.Do(context.Background(), c.B().FunctionList().Libraryname(scripts.LibraryName).Withcode().Build()).ToArray()
	if len(code) != 1 {
		t.Fatalf("FUNCTION LIST = %v", code)
	}
}

func TestEnsureConcurrent(t *testing.T) {
	srv := redistest.Start(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	actions := make(chan string, 4)
	for i := 0; i < 4; i++ {
		c := srv.Client(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := lualib.Ensure(context.Background(), c)
			errs <- err
			actions <- info.Action
		}()
	}
	wg.Wait()
	close(errs)
	close(actions)
	for err := range errs {
		if err != nil {
			t.Errorf("Ensure: %v", err)
		}
	}
	loaded := 0
	for a := range actions {
		if a == lualib.ActionLoaded {
			loaded++
		} else if a != lualib.ActionKept {
			t.Errorf("action %q", a)
		}
	}
	if loaded != 1 {
		t.Errorf("%d processes loaded the library, want 1", loaded)
	}
}

func TestLoadReplacesNewer(t *testing.T) {
	c := redistest.Start(t).Client(t)
	info, err := lualib.Load(context.Background(), c)
	if err != nil || info.Action != lualib.ActionLoaded || info.Previous != 0 {
		t.Fatalf("Load on empty server = %+v, %v", info, err)
	}
	redistest.Do(t, c, "FUNCTION", "LOAD", "REPLACE", withVersion(t, scripts.Version()+5))
	info, err = lualib.Load(context.Background(), c)
	if err != nil || info.Action != lualib.ActionReplaced || info.Previous != scripts.Version()+5 || info.Loaded != scripts.Version() {
		t.Fatalf("Load over a newer library = %+v, %v", info, err)
	}
	if v := loadedVersion(t, c); v != int64(scripts.Version()) {
		t.Errorf("voltedge_version = %d", v)
	}
}

func TestIsFunctionNotFound(t *testing.T) {
	c := redistest.Start(t).Client(t)
	err := c.Do(context.Background(), c.B().Fcall().Function(scripts.FnVersion).Numkeys(0).Build()).Error()
	if !lualib.IsFunctionNotFound(err) {
		t.Errorf("IsFunctionNotFound(%v) = false", err)
	}
	other := c.Do(context.Background(), c.B().Arbitrary("NOSUCHCOMMAND").Build()).Error()
	for _, e := range []error{nil, errors.New("Function not found"), other, rueidis.Nil} {
		if lualib.IsFunctionNotFound(e) {
			t.Errorf("IsFunctionNotFound(%v) = true", e)
		}
	}
}

func TestCallerReloadsAfterDelete(t *testing.T) {
	c := redistest.Start(t).Client(t)
	var logs bytes.Buffer
	k := lualib.NewCaller(c, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx := context.Background()
	redistest.Do(t, c, "HSET", keys.Mapping, keys.PointRef("1001", "1"), keys.PointRef("pm", "v"))

	// Empty server: the first call loads the library.
	if s, err := k.Call(ctx, scripts.FnSyncMeasurement, "1001", "1", "10", "1").ToString(); err != nil || s != "OK" {
		t.Fatalf("first call = %q, %v", s, err)
	}
	// Redis restarted without persistence.
	redistest.Do(t, c, "FUNCTION", "DELETE", scripts.LibraryName)
	args := []string{"1001", "1", "20", "2"}
	if s, err := k.Fcall(ctx, scripts.FnSyncMeasurement, args).ToString(); err != nil || s != "OK" {
		t.Fatalf("call after FUNCTION DELETE = %q, %v", s, err)
	}
	v, _ := c.Do(ctx, c.B().Hget().Key(keys.ModelValues("pm")).Field("v").Build()).ToString()
	if v != "20" {
		t.Errorf("model value = %q", v)
	}
	if n := strings.Count(logs.String(), "action=loaded"); n != 2 {
		t.Errorf("logged %d reloads, want 2:\n%s", n, logs.String())
	}

	// A function missing from a loaded library is retried once and reported.
	err := k.Call(ctx, "no_such_function").Error()
	if !lualib.IsFunctionNotFound(err) {
		t.Errorf("unknown function: %v", err)
	}
	if !strings.Contains(logs.String(), "action=kept") {
		t.Errorf("no log for the kept library:\n%s", logs.String())
	}
	// Other errors pass through untouched.
	if err := k.Call(ctx, scripts.FnSyncMeasurement, "1001").Error(); err == nil || lualib.IsFunctionNotFound(err) {
		t.Errorf("bad arguments: %v", err)
	}
}
