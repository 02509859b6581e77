// Package dtu is comsrv's TCP server for DTUs that connect in: it reads each
// DTU's registration packet, binds the link to its channel, strips heartbeats
// and polls the Modbus RTU devices behind it, one request in flight per link.
//
// Each connection costs one goroutine and a 512-byte buffer; timers are the
// socket's read deadline, so an idle link costs no CPU.
package dtu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/poll"
	"github.com/voltedge/voltedge/comsrv/sink"
	"github.com/voltedge/voltedge/internal/keys"
)

// Server accepts DTU connections and runs one link per registered DTU.
type Server struct {
	cfg   *config.Config
	plans map[string]*poll.Plan
	byReg map[string]*config.Channel
	sink  *sink.Sink
	log   *slog.Logger

	conns    atomic.Int64
	wg       sync.WaitGroup
	refusals *rateLog

	mu          sync.Mutex
	links       map[string]*link     // channel id → active link
	counters    map[string]*counters // channel id → counters, kept across reconnects
	provisioned map[string]*config.Channel
}

// New prepares a server for cfg. Plans are compiled once per template.
func New(cfg *config.Config, sk *sink.Sink, log *slog.Logger) (*Server, error) {
	s := &Server{
		cfg:         cfg,
		plans:       make(map[string]*poll.Plan, len(cfg.TemplateByID)),
		byReg:       make(map[string]*config.Channel, len(cfg.ChannelList)),
		sink:        sk,
		log:         log,
		links:       make(map[string]*link),
		counters:    make(map[string]*counters),
		provisioned: make(map[string]*config.Channel),
	}
	s.refusals = newRateLog(log, cfg.DTU.RefuseLogInterval.Duration)
	for name, t := range cfg.TemplateByID {
		p, err := poll.Compile(t)
		if err != nil {
			return nil, fmt.Errorf("compile template %s: %w", name, err)
		}
		s.plans[name] = p
	}
	for _, ch := range cfg.ChannelList {
		s.byReg[ch.Registration] = ch
	}
	return s, nil
}

// Online is the number of registered links.
func (s *Server) Online() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.links)
}

// Connections is the number of open sockets, registered or not.
func (s *Server) Connections() int64 { return s.conns.Load() }

// ListenAndServe listens on the configured address and serves until ctx is cancelled.
func (s *Server) ListenAndServe(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.DTU.Listen)
	if err != nil {
		return fmt.Errorf("dtu listen %s: %w", s.cfg.DTU.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve accepts connections on ln until ctx is cancelled, then closes every
// link and waits for them.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.log.Info("dtu server listening", "addr", ln.Addr().String(), "max_connections", s.cfg.DTU.MaxConnections)
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var backoff time.Duration
	max := int64(s.cfg.DTU.MaxConnections)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("dtu accept: %w", err)
			}
			// Out of file descriptors and the like: back off, never spin.
			backoff = min(max2(backoff*2, 5*time.Millisecond), time.Second)
			s.log.Warn("dtu accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			continue
		}
		backoff = 0
		if s.conns.Add(1) > max {
			s.conns.Add(-1)
			_ = c.Close()
			s.refusals.note("connection limit reached", "", c.RemoteAddr().String(), "")
			continue
		}
		s.wg.Add(1)
		go s.handle(ctx, c)
	}
	s.wg.Wait()
	return nil
}

func max2(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

func (s *Server) handle(ctx context.Context, c net.Conn) {
	defer s.wg.Done()
	defer s.conns.Add(-1)
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()

	remote := c.RemoteAddr().String()
	f := newFramer(s.cfg.DTU.Heartbeat.Bytes)
	id, err := s.readRegistration(c, f)
	if err != nil {
		s.refusals.note("bad registration", err.Error(), remote, "")
		return
	}
	ch := s.channelFor(id)
	if ch == nil {
		s.refusals.note("unknown registration id", "", remote, id)
		return
	}
	plan := s.plans[ch.Template]
	if plan == nil {
		s.log.Error("channel has no compiled template", "channel", ch.ID, "template", ch.Template)
		return
	}
	l := &link{
		srv: s, conn: c, ch: ch, plan: plan, regID: id, remote: remote, f: f,
		done: make(chan struct{}),
	}
	l.st = s.attach(l)
	reason := l.run(ctx)
	s.detach(l, reason)
}

// readRegistration reads until a complete registration packet is buffered,
// within the registration timeout. Bytes after it stay in f.
func (s *Server) readRegistration(c net.Conn, f *framer) (string, error) {
	deadline := time.Now().Add(s.cfg.DTU.RegistrationTimeout.Duration)
	if err := c.SetReadDeadline(deadline); err != nil {
		return "", err
	}
	reg := &s.cfg.DTU.Registration
	for {
		n, err := c.Read(f.space())
		f.wrote(n)
		if n > 0 {
			id, used, perr := parseRegistration(f.buf[f.r:], reg)
			if perr == nil {
				f.r += used
				return id, nil
			}
			if !errors.Is(perr, errNeedMore) {
				return "", perr
			}
			if f.buffered() >= maxRegistration {
				return "", fmt.Errorf("no registration within %d bytes", maxRegistration)
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return "", fmt.Errorf("no registration within %s", s.cfg.DTU.RegistrationTimeout.Duration)
			}
			return "", fmt.Errorf("read registration: %w", err)
		}
	}
}

// channelFor finds the channel for a registration id, provisioning one from
// the configured template when that is allowed.
func (s *Server) channelFor(id string) *config.Channel {
	if ch, ok := s.byReg[id]; ok {
		return ch
	}
	if s.cfg.DTU.UnknownIDs != "provision" || !keys.ValidID(id) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.provisioned[id]; ok {
		return ch
	}
	t := s.cfg.TemplateByID[s.cfg.DTU.ProvisionTemplate]
	if t == nil {
		return nil
	}
	ch := &config.Channel{ID: id, Registration: id, Template: t.Name, Name: id, T: t}
	s.provisioned[id] = ch
	s.sink.Do(s.sink.B().Sadd().Key(keys.Channels).Member(id).Build())
	s.log.Info("provisioned channel", "channel", id, "template", t.Name)
	return ch
}

// attach makes l the channel's active link. An older link of the same channel
// is closed first and waited for, so that a channel never has two pollers.
// The channel's counters carry over.
func (s *Server) attach(l *link) *counters {
	s.mu.Lock()
	old := s.links[l.ch.ID]
	s.links[l.ch.ID] = l
	st := s.counters[l.ch.ID]
	if st == nil {
		st = &counters{}
		s.counters[l.ch.ID] = st
	}
	s.mu.Unlock()
	if old != nil {
		old.replaced.Store(true)
		_ = old.conn.Close()
		select {
		case <-old.done:
		case <-time.After(5 * time.Second):
			s.log.Error("replaced link did not stop in time", "channel", l.ch.ID)
		}
		s.log.Info("dtu link replaced", "channel", l.ch.ID, "registration", quoteID(l.regID), "old_remote", old.remote, "new_remote", l.remote)
	}
	return st
}

// detach removes l unless a newer link replaced it, and records the channel offline.
func (s *Server) detach(l *link, reason string) {
	s.mu.Lock()
	mine := s.links[l.ch.ID] == l
	if mine {
		delete(s.links, l.ch.ID)
	}
	s.mu.Unlock()
	if mine {
		l.writeStatus(time.Now(), false, reason)
		s.log.Info("dtu offline", "channel", l.ch.ID, "registration", quoteID(l.regID), "remote", l.remote, "reason", reason)
	}
	close(l.done)
}

// rateLog logs refusals at most once per interval per reason, with a count.
type rateLog struct {
	log      *slog.Logger
	interval time.Duration
	mu       sync.Mutex
	last     map[string]time.Time
	dropped  map[string]int
}

func newRateLog(log *slog.Logger, interval time.Duration) *rateLog {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	return &rateLog{log: log, interval: interval, last: map[string]time.Time{}, dropped: map[string]int{}}
}

// note records one refusal of the given category; detail, remote and id describe it.
func (r *rateLog) note(reason, detail, remote, id string) {
	now := time.Now()
	r.mu.Lock()
	if now.Sub(r.last[reason]) < r.interval {
		r.dropped[reason]++
		r.mu.Unlock()
		return
	}
	suppressed := r.dropped[reason]
	r.last[reason] = now
	r.dropped[reason] = 0
	r.mu.Unlock()
	attrs := []any{"reason", reason, "remote", remote}
	if detail != "" {
		attrs = append(attrs, "detail", detail)
	}
	if id != "" {
		attrs = append(attrs, "registration", quoteID(id))
	}
	if suppressed > 0 {
		attrs = append(attrs, "similar_since_last_log", strconv.Itoa(suppressed))
	}
	r.log.Warn("dtu connection refused", attrs...)
}
