package ws

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	fws "github.com/fasthttp/websocket"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/wait"
)

// dialFrom dials /ws from the loopback address local (e.g. "127.0.0.2"),
// returning the connection or the refusal's status.
func (e *env) dialFrom(local string, h http.Header) (*fws.Conn, int, error) {
	d := fws.Dialer{HandshakeTimeout: patience, NetDial: func(network, addr string) (net.Conn, error) {
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		return nd.Dial(network, addr)
	}}
	c, resp, err := d.Dial("ws://"+e.addr+"/ws", h)
	if err != nil {
		if resp != nil {
			return nil, resp.StatusCode, err
		}
		return nil, 0, err
	}
	return c, http.StatusSwitchingProtocols, nil
}

// dialMany dials n clients at once from local and returns how many were
// accepted, closing them when the test ends.
func (e *env) dialMany(t *testing.T, n int, local string, h http.Header) (accepted int, statuses map[int]int) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	statuses = map[int]int{}
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, status, err := e.dialFrom(local, h)
			mu.Lock()
			defer mu.Unlock()
			statuses[status]++
			if err == nil {
				accepted++
				t.Cleanup(func() { _ = c.Close() })
			}
		}()
	}
	close(start)
	wg.Wait()
	return accepted, statuses
}

// TestClientLimitExact: concurrent upgrades never exceed the limit, and the
// slots reserved for clients with credentials stay free of anonymous ones.
func TestClientLimitExact(t *testing.T) {
	e := newEnv(t, Options{MaxClients: 20, ReservedClients: 4, MaxClientsPerIP: 1000})
	if n, st := e.dialMany(t, 60, "127.0.0.1", nil); n != 16 {
		t.Fatalf("%d anonymous clients accepted (%v), want 16 (20 less 4 reserved)", n, st)
	}
	auth := http.Header{"Authorization": {"Bearer " + testToken}}
	if n, st := e.dialMany(t, 10, "127.0.0.1", auth); n != 4 {
		t.Fatalf("%d clients with a token accepted (%v), want the 4 reserved", n, st)
	}
	wait.For(t, patience, "20 clients in the hub", func() error { return wait.Equal(e.hub.Clients(), 20) })
	if _, status, _ := e.dialFrom("127.0.0.1", auth); status != http.StatusServiceUnavailable {
		t.Fatalf("over the limit: status %d, want 503", status)
	}
}

// TestClientLimitReleased: a closed client's slot is free again.
func TestClientLimitReleased(t *testing.T) {
	e := newEnv(t, Options{MaxClients: 2, ReservedClients: -1})
	a := e.dial(t, "/ws", nil)
	e.dial(t, "/ws", nil)
	if _, status, _ := e.dialFrom("127.0.0.1", nil); status != http.StatusServiceUnavailable {
		t.Fatalf("third client: status %d, want 503", status)
	}
	_ = a.Close()
	wait.For(t, patience, "the slot to be released", func() error {
		c, status, err := e.dialFrom("127.0.0.1", nil)
		if err != nil {
			return fmt.Errorf("status %d: %w", status, err)
		}
		_ = c.Close()
		return nil
	})
}

// TestClientLimitPerIP: one address holds at most MaxClientsPerIP anonymous
// clients; clients with credentials and other addresses are not held back.
func TestClientLimitPerIP(t *testing.T) {
	e := newEnv(t, Options{MaxClients: 100, MaxClientsPerIP: 3})
	if n, st := e.dialMany(t, 10, "127.0.0.1", nil); n != 3 || st[http.StatusTooManyRequests] != 7 {
		t.Fatalf("%d anonymous clients from one address accepted (%v), want 3 and 7 refused with 429", n, st)
	}
	auth := http.Header{"Authorization": {"Bearer " + testToken}}
	if n, st := e.dialMany(t, 2, "127.0.0.1", auth); n != 2 {
		t.Fatalf("%d clients with a token accepted (%v), want 2", n, st)
	}
	if n, st := e.dialMany(t, 3, "127.0.0.2", nil); n != 3 {
		t.Fatalf("%d anonymous clients from another address accepted (%v), want 3", n, st)
	}
}

// TestUnknownIDsCostNothing: many clients subscribing to many ids that are
// neither a model nor a channel keep the hub's memory and Redis's commands
// bounded; known ids are served.
func TestUnknownIDsCostNothing(t *testing.T) {
	const clients, ids, perMessage = 50, 1000, 50
	e := newEnv(t, Options{ChannelInterval: 20 * time.Millisecond, MaxClientsPerIP: clients})
	do(t, e.c, "SADD", keys.Channels, "1001")
	do(t, e.c, "HSET", keys.ChannelStatus("1001"), "online", "1")
	do(t, e.c, "HSET", keys.ModelValues("m1"), "p", "1")
	e.hub.refreshCatalog(context.Background())

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	conns := make([]*fws.Conn, clients)
	for i := range conns {
		conns[i] = e.dial(t, "/ws", nil)
	}
	pad := strings.Repeat("x", 118)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for start := 0; start < ids; start += perMessage {
				var models, channels []string
				for j := start; j < start+perMessage; j++ {
					id := pad + strconv.Itoa(i*ids+j)
					models, channels = append(models, "m"+id), append(channels, "c"+id)
				}
				if start == 0 {
					models, channels = append(models, "m1"), append(channels, "1001")
				}
				b := fmt.Sprintf(`{"type":"subscribe","models":%s,"channels":%s}`, jsonList(models), jsonList(channels))
				_ = c.SetWriteDeadline(time.Now().Add(patience))
				if err := c.WriteMessage(fws.TextMessage, []byte(b)); err != nil {
					errs <- err
					return
				}
				for {
					_ = c.SetReadDeadline(time.Now().Add(patience))
					_, data, err := c.ReadMessage()
					if err != nil {
						errs <- err
						return
					}
					if strings.Contains(string(data), `"type":"subscribed"`) || strings.Contains(string(data), `"type":"error"`) {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew %d KiB for %d clients with %d unknown ids each", grown>>10, clients, 2*ids)
	if grown > 16<<20 {
		t.Errorf("heap grew %d MiB, want under 16", grown>>20)
	}

	// Every client gets the known channel's status; Redis reads it once per
	// interval whatever the number of subscribers and unknown ids.
	m := readType(t, conns[0], TypeChannel)
	if m.str("channel") != "1001" {
		t.Fatalf("channel message = %v", m)
	}
	do(t, e.c, "CONFIG", "RESETSTAT")
	time.Sleep(500 * time.Millisecond)
	info, err := e.c.Do(context.Background(), e.c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, line := range strings.Split(info, "\n") {
		if _, rest, ok := strings.Cut(line, "calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			total += n
		}
	}
	t.Logf("Redis commands in 500 ms: %d", total)
	if total > 200 {
		t.Errorf("%d Redis commands in 500 ms with a 20 ms channel interval, want at most 200:\n%s", total, info)
	}
}

// TestSubscriptionTotalBound: the subscriptions of all clients together
// are bounded.
func TestSubscriptionTotalBound(t *testing.T) {
	e := newEnv(t, Options{MaxTotalSubscriptions: 15})
	var models []string
	for i := 0; i < 10; i++ {
		models = append(models, "m"+strconv.Itoa(i))
		do(t, e.c, "HSET", keys.ModelValues(models[i]), "p", "1")
	}
	e.hub.refreshCatalog(context.Background())
	a, b := e.dial(t, "/ws", nil), e.dial(t, "/ws", nil)
	if m := subscribe(t, a, map[string]any{"models": models}); fmt.Sprint(m["models"]) != fmt.Sprint(models) {
		t.Fatalf("first client: %v", m)
	}
	write(t, b, map[string]any{"type": TypeSubscribe, "models": models})
	if m := read(t, b); m.str("type") != TypeError || !strings.Contains(m.str("message"), "limit") {
		t.Fatalf("second client over the total: %v, want an error", m)
	}
	_ = a.Close()
	wait.For(t, patience, "the first client's subscriptions to be released", func() error {
		write(t, b, map[string]any{"type": TypeSubscribe, "models": models})
		if m := read(t, b); m.str("type") != TypeSubscribed {
			return fmt.Errorf("got %v", m)
		}
		return nil
	})
}

func jsonList(ids []string) string {
	return `["` + strings.Join(ids, `","`) + `"]`
}

// TestUnknownIDsReported: ids that name no model or channel are listed as
// unknown and not subscribed; a model becomes known with its first update.
func TestUnknownIDsReported(t *testing.T) {
	e := newEnv(t, Options{})
	conn := e.dial(t, "/ws", nil)
	m := subscribe(t, conn, map[string]any{"models": []string{"later"}, "channels": []string{"9999"}})
	if fmt.Sprint(m["models"], m["channels"], m["unknown"]) != "[] [] [later 9999]" {
		t.Fatalf("subscribed = %v", m)
	}
	do(t, e.c, "PUBLISH", keys.ModelUpdates("later"), `{"model":"later","ts":1,"values":{}}`)
	wait.For(t, patience, "the update", func() error { return wait.Equal(e.hub.Stats().Updates, uint64(1)) })
	if m := subscribe(t, conn, map[string]any{"models": []string{"later"}}); fmt.Sprint(m["models"], m["unknown"]) != "[later] <nil>" {
		t.Fatalf("after an update: %v", m)
	}
}
