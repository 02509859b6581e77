package svc

import (
	"fmt"
	"net/http"
	"os"
	"strings"

	"context"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/conf"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/redisconn"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
)

// TestConnectRedisWaitsForRedis starts the service side first and Redis a
// second later, as on a box whose Redis comes up after the services.
func TestConnectRedisWaitsForRedis(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	redis := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	started := make(chan struct{})
	time.AfterFunc(time.Second, func() {
		defer close(started)
		_ = redis.Start()
	})
	t.Cleanup(func() {
		<-started
		if redis.Process != nil {
			_ = redis.Process.Kill()
			_ = redis.Wait()
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := ConnectRedis(ctx, "test", "redis://127.0.0.1:"+strconv.Itoa(port), redisconn.Options{}, log)
	if err != nil {
		t.Fatalf("ConnectRedis: %v", err)
	}
	defer c.Close()
	info, err := lualib.Status(ctx, c)
	if err != nil || info.Loaded == 0 {
		t.Fatalf("library not loaded after connect: %+v %v", info, err)
	}
}

func TestConnectRedisGivesUpWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := ConnectRedis(ctx, "test", "redis://127.0.0.1:1", redisconn.Options{}, log); err == nil {
		t.Fatal("connected to nothing")
	}
}

// TestMetricsOnListen: a service serves /metrics on its listen address
// while it runs, with uptime and Redis reachability.
func TestMetricsOnListen(t *testing.T) {
	rs := redistest.Start(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfgPath := filepath.Join(t.TempDir(), "x.toml")
	if err := os.WriteFile(cfgPath, []byte("redis_url = \""+rs.URL()+"\"\nlisten = \""+addr+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Start(ctx, basic("testsvc", func(ctx context.Context, env *Env[conf.ServiceConfig]) error {
			<-ctx.Done()
			return nil
		}), Args{Config: cfgPath})

	}()
	wait.For(t, 10*time.Second, "/metrics", func() error {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		if err != nil {
			return fmt.Errorf("read /metrics: %w", err)
		}
		return wait.Check(strings.Contains(body, "testsvc_redis_up 1") && strings.Contains(body, "testsvc_uptime_seconds"),
			"metrics:\n%s", body)
	})

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
