package api

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/wait"
)

// serveLoopback serves e.app on a loopback port until the test ends.
func (e *env) serveLoopback(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = LimitPerAddr(ln, e.deps.Config.HTTPMaxConnsPerIP)
	go func() { _ = e.app.Listener(ln) }()
	t.Cleanup(func() { _ = e.app.ShutdownWithTimeout(5 * time.Second) })
	return ln.Addr().String()
}

// partial opens n connections from the loopback address local that each
// send the start of a request and nothing more.
func partial(t *testing.T, addr, local string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: patience}
	for i := 0; i < n; i++ {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	return conns
}

// closedWithin counts the connections the server closes within d.
func closedWithin(conns []net.Conn, d time.Duration) int {
	var mu sync.Mutex
	var wg sync.WaitGroup
	n := 0
	deadline := time.Now().Add(d)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(deadline)
			_, err := io.Copy(io.Discard, c) // until EOF or the deadline
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				mu.Lock()
				n++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return n
}

// health asks GET /health from the loopback address local.
func health(addr, local string) error {
	cl := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}).DialContext}}
	resp, err := cl.Get("http://" + addr + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, bufio.NewReader(resp.Body))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return fmt.Errorf("GET /health: %d", resp.StatusCode)
	}
	return nil
}

// TestSlowRequestsDropped: partial requests are closed after the read
// timeout, and /health answers while they are held.
func TestSlowRequestsDropped(t *testing.T) {
	e := newEnv(t, "http_read_timeout = \"1s\"\nhttp_max_conns_per_ip = 1000\n")
	addr := e.serveLoopback(t)
	var before, during runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	conns := partial(t, addr, "127.0.0.1", 300)
	if err := health(addr, "127.0.0.1"); err != nil {
		t.Fatalf("during 300 partial requests: %v", err)
	}
	runtime.ReadMemStats(&during)
	t.Logf("heap in use: %d KiB before, %d KiB with 300 partial requests", before.HeapInuse>>10, during.HeapInuse>>10)
	if n := closedWithin(conns, 5*time.Second); n != len(conns) {
		t.Fatalf("%d of %d partial requests closed within 5 s, want all (read timeout 1 s)", n, len(conns))
	}
	t.Logf("300 partial requests closed %s after they started", time.Since(start).Round(time.Millisecond))
	if err := health(addr, "127.0.0.1"); err != nil {
		t.Fatalf("after: %v", err)
	}
}

// TestConnectionCaps: one address holds at most http_max_conns_per_ip
// connections, the server at most http_max_conns; others still get /health
// while one address is at its cap.
func TestConnectionCaps(t *testing.T) {
	e := newEnv(t, "http_max_conns_per_ip = 20\nhttp_max_conns = 30\n")
	addr := e.serveLoopback(t)
	conns := partial(t, addr, "127.0.0.1", 25)
	if n := closedWithin(conns, 2*time.Second); n != 5 {
		t.Fatalf("%d of 25 connections from one address closed, want the 5 over the cap of 20", n)
	}
	if err := health(addr, "127.0.0.2"); err != nil {
		t.Fatalf("from another address: %v", err)
	}
	// The server counts the health request's connection until it has
	// finished with it, a moment after the answer: wait for that, so that
	// the second address meets the 20 held connections only.
	wait.For(t, patience, "the health connection released", func() error {
		return wait.Equal(e.app.Server().GetOpenConnectionsCount(), int32(20))
	})
	conns = partial(t, addr, "127.0.0.3", 15)
	if n := closedWithin(conns, 2*time.Second); n != 5 {
		t.Fatalf("%d of 15 connections from a second address closed, want the 5 over the total of 30", n)
	}
}
