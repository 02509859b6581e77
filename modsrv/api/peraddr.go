package api

import (
	"net"
	"sync"
)

// LimitPerAddr wraps ln so that one remote address holds at most n open
// connections; a connection over that is closed as soon as it is accepted.
// (fasthttp's own MaxConnsPerIP races with a shutdown that closes idle
// connections.)
func LimitPerAddr(ln net.Listener, n int) net.Listener {
	return &addrLimiter{Listener: ln, max: n, open: map[string]int{}}
}

type addrLimiter struct {
	net.Listener
	max  int
	mu   sync.Mutex
	open map[string]int // remote address → open connections
}

// Accept returns the next connection within its address's limit.
func (l *addrLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := c.RemoteAddr().String()
		if host, _, err := net.SplitHostPort(addr); err == nil {
			addr = host
		}
		l.mu.Lock()
		if l.open[addr] >= l.max {
			l.mu.Unlock()
			_ = c.Close()
			continue
		}
		l.open[addr]++
		l.mu.Unlock()
		return &addrConn{Conn: c, l: l, addr: addr}, nil
	}
}

// addrConn gives its address's slot back when it is closed, once.
type addrConn struct {
	net.Conn
	l    *addrLimiter
	addr string
	once sync.Once
}

// Close closes the connection and frees its slot.
func (c *addrConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.open[c.addr]--; c.l.open[c.addr] <= 0 {
			delete(c.l.open, c.addr)
		}
		c.l.mu.Unlock()
	})
	return err
}
