package dtu

import (
	"crypto/subtle"
	"errors"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/poll"
)

// Reasons of refused connections that the guards give.
const (
	reasonNotAllowed        = "source not allowed"
	reasonChannelNotAllowed = "source not allowed for the channel"
	reasonPerIP             = "too many unregistered connections from one address"
	reasonEvicted           = "too many unregistered connections (oldest closed)"
	reasonUnknownID         = "unknown registration id"
)

// Errors of attach.
var (
	errInUse = errors.New("registration in use")
	errLimit = errors.New("connection limit reached")
)

// pending is the pool of a listener's sockets that have not registered
// yet. It has its own cap, apart from the registered links: when it is
// full, a new socket closes the oldest waiting one, so sockets that never
// register cannot lock out a DTU that does. One source address may hold at
// most perIP of them; beyond that its new sockets are refused.
type pending struct {
	max, perIP int

	mu         sync.Mutex
	n          int
	byIP       map[netip.Addr]int
	head, tail *waiter // oldest first
}

// waiter is one socket in the pending pool.
type waiter struct {
	conn       net.Conn
	ip         netip.Addr
	prev, next *waiter
	in         bool        // in the pool (under pending.mu)
	evicted    atomic.Bool // closed to make room for a newer socket
}

func newPending(max, perIP int) *pending {
	return &pending{max: max, perIP: perIP, byIP: make(map[netip.Addr]int)}
}

// admit adds c from ip to the pool. It returns nil when ip holds its cap of
// unregistered sockets. When the pool is full, the oldest socket is closed.
func (p *pending) admit(c net.Conn, ip netip.Addr) *waiter {
	p.mu.Lock()
	if p.perIP > 0 && p.byIP[ip] >= p.perIP {
		p.mu.Unlock()
		return nil
	}
	var victim *waiter
	if p.n >= p.max {
		victim = p.head
		p.remove(victim)
		victim.evicted.Store(true)
	}
	w := &waiter{conn: c, ip: ip, in: true, prev: p.tail}
	if p.tail != nil {
		p.tail.next = w
	} else {
		p.head = w
	}
	p.tail = w
	p.n++
	p.byIP[ip]++
	p.mu.Unlock()
	if victim != nil {
		_ = victim.conn.Close() // its goroutine records the refusal
	}
	return w
}

// leave takes w out of the pool (registered, refused or closed); it may be called more than once.
func (p *pending) leave(w *waiter) {
	p.mu.Lock()
	p.remove(w)
	p.mu.Unlock()
}

func (p *pending) remove(w *waiter) {
	if !w.in {
		return
	}
	w.in = false
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		p.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		p.tail = w.prev
	}
	w.prev, w.next = nil, nil
	p.n--
	if p.byIP[w.ip]--; p.byIP[w.ip] <= 0 {
		delete(p.byIP, w.ip)
	}
}

// size is the number of unregistered sockets.
func (p *pending) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// addrOf is the IP address of a socket's remote end.
func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// secretShape is where a channel secret sits in a registration and how long it is.
type secretShape struct {
	prefix bool
	n      int
}

// secretIndex knows the registration secrets in use: the shapes of the
// channel secrets, to find a channel's id in a registration, and every
// secret, to mask it wherever a refused registration shows it.
type secretIndex struct {
	shapes []secretShape
	set    map[string]bool
	lens   []int // the distinct lengths of set
}

// newSecretIndex indexes the secrets of the channels of list and of the listeners.
func newSecretIndex(list []*config.Channel, listeners []*listener) *secretIndex {
	x := &secretIndex{set: map[string]bool{}}
	seen := map[secretShape]bool{}
	add := func(secret string) {
		if !x.set[secret] {
			x.set[secret] = true
			if !slices.Contains(x.lens, len(secret)) {
				x.lens = append(x.lens, len(secret))
			}
		}
	}
	for _, l := range listeners {
		if l.cfg.Secret != "" {
			add(l.cfg.Secret)
		}
	}
	for _, ch := range list {
		if ch.Secret == "" {
			continue
		}
		add(ch.Secret)
		sh := secretShape{prefix: ch.SecretPosition == config.SecretPrefix, n: len(ch.Secret)}
		if !seen[sh] {
			seen[sh] = true
			x.shapes = append(x.shapes, sh)
		}
	}
	return x
}

// mask replaces every secret inside a registration with '*'s.
func (x *secretIndex) mask(reg string) string {
	if len(x.set) == 0 {
		return reg
	}
	var b []byte
	for _, n := range x.lens {
		for i := 0; i+n <= len(reg); i++ {
			if x.set[reg[i:i+n]] {
				if b == nil {
					b = []byte(reg)
				}
				for j := i; j < i+n; j++ {
					b[j] = '*'
				}
			}
		}
	}
	if b == nil {
		return reg
	}
	return string(b)
}

// cutSecret splits sent into the id and a secret of n bytes at the
// position; ok is false when sent is too short for an id besides it.
func cutSecret(sent string, n int, prefix bool) (id, secret string, ok bool) {
	if len(sent) <= n {
		return "", "", false
	}
	if prefix {
		return sent[n:], sent[:n], true
	}
	return sent[:len(sent)-n], sent[len(sent)-n:], true
}

// sameSecret compares a received secret with the configured one in constant time.
func sameSecret(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// resolve finds the channel of the registration sent on listener l: the
// listener's secret, then a channel's secret, are checked and cut off. It
// returns the id without the secrets (the id to show, also when the
// registration is refused: ch nil, and then with any secret in it masked),
// the channel, its plan and whether a secret was cut off.
func (s *Server) resolve(l *listener, sent string) (id string, ch *config.Channel, plan *poll.Plan, cut bool) {
	id, ch, plan, cut = s.find(l, sent)
	if ch == nil {
		id = s.secrets.Load().mask(id)
	}
	return id, ch, plan, cut
}

func (s *Server) find(l *listener, sent string) (id string, ch *config.Channel, plan *poll.Plan, cut bool) {
	id = sent
	if sec := l.cfg.Secret; sec != "" {
		rest, got, ok := cutSecret(sent, len(sec), l.cfg.SecretPosition == config.SecretPrefix)
		if !ok {
			return "", nil, nil, true
		}
		if !sameSecret(got, sec) {
			return rest, nil, nil, true
		}
		id, cut = rest, true
	}
	ch, plan = s.dir.Find(id)
	if ch != nil {
		if ch.Secret == "" {
			return id, ch, plan, cut
		}
		return id, nil, nil, cut // its secret is missing
	}
	shown := id
	for _, sh := range s.secrets.Load().shapes {
		cand, got, ok := cutSecret(id, sh.n, sh.prefix)
		if !ok {
			continue
		}
		c, p := s.dir.Find(cand)
		if c == nil || c.Secret == "" || len(c.Secret) != sh.n || (c.SecretPosition == config.SecretPrefix) != sh.prefix {
			continue
		}
		if sameSecret(got, c.Secret) {
			return cand, c, p, true
		}
		shown, cut = cand, true // a known id with a wrong secret
	}
	if shown != id {
		return shown, nil, nil, cut
	}
	ch, plan = s.provision(l, id)
	return id, ch, plan, cut
}

// replacePolicy is the replacement policy between the link old and a new
// link nw of the same channel: the channel's own, else the stricter of
// their listeners'.
func replacePolicy(ch *config.Channel, old, nw *config.DTU) (string, time.Duration) {
	if ch.Replace != "" {
		return ch.Replace, ch.ReplaceAfter.Duration
	}
	rank := map[string]int{config.ReplaceAlways: 0, config.ReplaceIfSilent: 1, config.ReplaceNever: 2}
	p, after := nw.Replace, nw.ReplaceAfter.Duration
	if rank[old.Replace] > rank[p] {
		p, after = old.Replace, old.ReplaceAfter.Duration
	} else if old.Replace == p {
		after = max(after, old.ReplaceAfter.Duration)
	}
	return p, after
}

// mayReplace reports whether nw may replace the channel's link old at now.
func mayReplace(nw, old *link, now time.Time) bool {
	policy, after := replacePolicy(nw.ch, old.lst.cfg, nw.lst.cfg)
	switch policy {
	case config.ReplaceNever:
		return false
	case config.ReplaceIfSilent:
		return now.Sub(time.Unix(0, old.lastRx.Load())) >= after
	}
	return true
}

// patternError is a registration that does not match the listener's pattern.
type patternError struct {
	id string
	re *regexp.Regexp
}

func (e *patternError) Error() string {
	return "registration " + quoteID(e.id) + " does not match " + e.re.String()
}

// registrationDetail is what a refusal says of a bad registration, with
// any secret in it masked.
func (s *Server) registrationDetail(err error) string {
	var pe *patternError
	if errors.As(err, &pe) {
		return "registration " + quoteID(s.secrets.Load().mask(pe.id)) + " does not match " + pe.re.String()
	}
	return err.Error()
}
