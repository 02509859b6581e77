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

	"golang.org/x/crypto/bcrypt"

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
		"[[token]]\nname = \"t\"\ntoken = \"0123456789abcdef0123456789abcdef\"\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- svc.Start(ctx, service(func(a net.Addr) { addrc <- a }, &options{}), svc.Args{Config: cfg, Redis: srv.URL()})
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
	// By default only IP addresses and localhost may address modsrv: a
	// rebinding DNS name of a foreign page is refused.
	req, _ := http.NewRequest("GET", "http://"+addr.String()+"/health", nil)
	req.Host = "rebind.example"
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("GET /health as rebind.example: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest("POST", "http://"+addr.String()+"/devices", strings.NewReader(`{"id":"D1","template":"t1"}`))
	req.Header.Set("Authorization", "Bearer 0123456789abcdef0123456789abcdef")
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
	err := svc.Start(context.Background(), service(nil, &options{}), svc.Args{Config: cfg})
	if err == nil || !strings.Contains(err.Error(), `bad.toml:2:1: key "bogus": unknown key`) {
		t.Fatalf("got %v", err)
	}
	if err := svc.Start(context.Background(), service(nil, &options{}), svc.Args{Config: "../config/modsrv.toml", Check: true}); err != nil {
		t.Fatalf("-check of the example: %v", err)
	}
}

// TestRunRefusesDemoPassword: a user with a well-known demo password stops
// modsrv at start, naming its position, unless it runs with -demo.
func TestRunRefusesDemoPassword(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("admin"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "demo.toml")
	if err := os.WriteFile(cfg, []byte("[[user]]\nname = \"admin\"\nbcrypt = \""+string(hash)+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = svc.Start(context.Background(), service(nil, &options{}), svc.Args{Config: cfg, Check: true})
	if err == nil || !strings.Contains(err.Error(), `demo.toml:3:10: key "user[0].bcrypt": the password is "admin"`) {
		t.Fatalf("got %v", err)
	}
	if err := svc.Start(context.Background(), service(nil, &options{demo: true}), svc.Args{Config: cfg, Check: true}); err != nil {
		t.Fatalf("with -demo: %v", err)
	}
}

// TestHashPassword: modsrv -hash-password prints a bcrypt hash of the
// first line of its input.
func TestHashPassword(t *testing.T) {
	var out strings.Builder
	if err := hashPassword(strings.NewReader("a long pass phrase\n"), &out); err != nil {
		t.Fatal(err)
	}
	h := strings.TrimSpace(out.String())
	if err := bcrypt.CompareHashAndPassword([]byte(h), []byte("a long pass phrase")); err != nil {
		t.Fatalf("%q: %v", h, err)
	}
	if c, _ := bcrypt.Cost([]byte(h)); c != bcrypt.DefaultCost {
		t.Fatalf("cost %d", c)
	}
	if err := hashPassword(strings.NewReader("\n"), &out); err == nil {
		t.Fatal("empty password hashed")
	}
}
