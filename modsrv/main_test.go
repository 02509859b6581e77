package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/svc"
	"github.com/voltedge/voltedge/scripts"
)

// patience bounds every wait of these tests.
const patience = 20 * time.Second

// TestRun starts modsrv on a private Redis, checks that it loaded the Lua
// library and answers, and that it stops cleanly when its context ends.
func TestRun(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "modsrv.toml")
	doc := "listen = \"127.0.0.1:0\"\nlog_file = \"" + filepath.Join(dir, "modsrv.log") + "\"\n" +
		"[[token]]\nname = \"t\"\ntoken = \"0123456789abcdef0123\"\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- svc.Start(ctx, service(func(a net.Addr) { addrc <- a }), svc.Args{Config: cfg, Redis: srv.URL()})
	}()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("run returned early: %v", err)
	case <-time.After(patience):
		t.Fatal("modsrv did not start listening")
	}
	hc := &http.Client{Timeout: patience}
	resp, err := hc.Get("http://" + addr.String() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Redis      string `json:"redis"`
		LuaVersion int    `json:"lua_version"`
	}
	err = json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || h.Redis != "ok" || h.LuaVersion != scripts.Version() {
		t.Fatalf("health %d %+v %v", resp.StatusCode, h, err)
	}
	req, _ := http.NewRequest("POST", "http://"+addr.String()+"/devices", strings.NewReader(`{"id":"D1","template":"t1"}`))
	req.Header.Set("Authorization", "Bearer 0123456789abcdef0123")
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("POST /devices: %d %s", resp.StatusCode, b)
	}
	resp, err = hc.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`modsrv_http_requests_total{route="/devices",method="POST",status="201"} 1`, "modsrv_ws_clients 0"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q:\n%s", want, b)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(patience):
		t.Fatal("modsrv did not stop")
	}
	logText, _ := os.ReadFile(filepath.Join(dir, "modsrv.log"))
	if !strings.Contains(string(logText), "modsrv stopped") {
		t.Fatalf("log:\n%s", logText)
	}
}

func TestRunConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(cfg, []byte("listen = \":8002\"\nbogus = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := svc.Start(context.Background(), service(nil), svc.Args{Config: cfg})
	if err == nil || !strings.Contains(err.Error(), `bad.toml:2:1: key "bogus": unknown key`) {
		t.Fatalf("got %v", err)
	}
	if err := svc.Start(context.Background(), service(nil), svc.Args{Config: "../config/modsrv.toml", Check: true}); err != nil {
		t.Fatalf("-check of the example: %v", err)
	}
}
