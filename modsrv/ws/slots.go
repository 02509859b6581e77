package ws

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// handshakeGrace is how long a reserved slot waits for its connection: a
// slot whose upgrade never reaches the handler (the 101 answer could not be
// written) is released after it.
const handshakeGrace = 10 * time.Second

// Slot states.
const (
	slotReserved int32 = iota // by admit, before the upgrade
	slotClaimed               // by the connection's handler
	slotFreed                 // counted out again
)

// slots counts the clients, reserved before the upgrade completes so that
// the limits are exact under concurrent upgrades.
type slots struct {
	mu    sync.Mutex
	total int            // every client
	anon  int            // clients without credentials
	perIP map[string]int // anonymous clients by remote address
}

// slot is one client's place in the count.
type slot struct {
	h     *Hub
	ip    string
	auth  bool
	state atomic.Int32
}

// reserve takes a slot for a client from ip, or returns the status and
// message of the refusal: 503 when the hub is full (for anonymous clients,
// when only the reserved slots are left), 429 when ip holds its share of
// anonymous clients.
func (h *Hub) reserve(ip string, auth bool) (*slot, int, string) {
	s := &h.slots
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total >= h.opt.MaxClients {
		return nil, http.StatusServiceUnavailable, "too many WebSocket clients"
	}
	if !auth {
		if s.anon >= h.opt.MaxClients-h.opt.ReservedClients {
			return nil, http.StatusServiceUnavailable, "too many WebSocket clients without credentials"
		}
		if s.perIP[ip] >= h.opt.MaxClientsPerIP {
			return nil, http.StatusTooManyRequests, "too many WebSocket clients from this address"
		}
		s.anon++
		s.perIP[ip]++
	}
	s.total++
	return &slot{h: h, ip: ip, auth: auth}, 0, ""
}

// claim hands the slot to its connection; false means it was released
// meanwhile (the handshake took longer than handshakeGrace).
func (s *slot) claim() bool { return s.state.CompareAndSwap(slotReserved, slotClaimed) }

// expire releases the slot if no connection claimed it.
func (s *slot) expire() {
	if s.state.CompareAndSwap(slotReserved, slotFreed) {
		s.count()
	}
}

// release gives the slot back; only the first call counts.
func (s *slot) release() {
	if s.state.Swap(slotFreed) != slotFreed {
		s.count()
	}
}

// count removes the slot from the counts.
func (s *slot) count() {
	c := &s.h.slots
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if !s.auth {
		c.anon--
		if c.perIP[s.ip]--; c.perIP[s.ip] <= 0 {
			delete(c.perIP, s.ip)
		}
	}
}
