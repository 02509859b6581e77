// Package redistest starts private redis-server processes for tests, so that
// no test ever touches (or flushes) a Redis it did not start.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/redisconn"
)

// Server is a redis-server process owned by one test.
type Server struct {
	Addr string
	cmd  *exec.Cmd
	bin  string
	dir  string
	port int
	// persistent: an append-only file written at every command, so that
	// Restart keeps the data.
	persistent bool
}

// Start launches redis-server on a free loopback port and stops it when the
// test ends. The test is skipped with a clear message only if the binary is
// missing and VOLTEDGE_REQUIRE_REDIS is not set; CI sets it so that a missing
// server fails loudly.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, false)
}

// StartPersistent is Start with an append-only file synced at every write
// (--appendonly yes --appendfsync always), so that Restart keeps every
// acknowledged write, as Redis does on the box.
func StartPersistent(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, true)
}

func start(tb testing.TB, persistent bool) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("VOLTEDGE_REQUIRE_REDIS") != "" {
			tb.Fatalf("redis-server not installed: %v", err)
		}
		tb.Skipf("redis-server not installed: %v", err)
	}
	dir := tb.TempDir()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			tb.Fatalf("find free port: %v", err)
		}
		s, err := launch(bin, dir, port, persistent)
		if err == nil {
			tb.Cleanup(s.stop)

			return s
		}
		lastErr = err
	}
	tb.Fatalf("start redis-server: %v", lastErr)
	return nil
}

func launch(bin, dir string, port int, persistent bool) (*Server, error) {
	aof := []string{"--appendonly", "no"}
	if persistent {
		aof = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	args := append([]string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"),
		"--daemonize", "no",
	}, aof...)
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), cmd: cmd, bin: bin, dir: dir, port: port, persistent: persistent}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if ping(s.Addr) == nil {
			return s, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.stop()
	log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
	return nil, fmt.Errorf("redis-server on port %d did not answer: %s", port, log)
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

func (s *Server) stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// Restart stops the server (its data is lost unless it was started with
// StartPersistent) and starts
// redis-server again on the same port, as when Redis restarts under a
// running service. Clients see their connections break and must reconnect.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.stop()
	var err error
	// The port may be held for a moment after the stop.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var n *Server
		if n, err = launch(s.bin, s.dir, s.port, s.persistent); err == nil {
			s.cmd = n.cmd
			return
		}
	}
	tb.Fatalf("restart redis-server on %s: %v", s.Addr, err)
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr }

// Client returns a lean rueidis client for the server, closed at test end.
func (s *Server) Client(tb testing.TB) rueidis.Client {
	tb.Helper()
	c, err := redisconn.New(s.URL(), redisconn.Options{ClientName: "test"})
	if err != nil {
		tb.Fatalf("redis client: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// Do runs a command given as strings and returns its reply, failing the test on error.
func Do(tb testing.TB, c rueidis.Client, args ...string) rueidis.RedisResult {
	tb.Helper()
	r := c.Do(context.Background(), c.B().Arbitrary(args...).Build())
	if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
		tb.Fatalf("%v: %v", args, err)
	}
	return r
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
