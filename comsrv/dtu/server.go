// Package dtu is comsrv's TCP server for DTUs that connect in: it reads each
// DTU's registration, binds the link to its channel, answers heartbeats and
// polls the Modbus RTU devices behind it, one request in flight per link.
// How a vendor's DTU registers, beats and carries RTU frames is its profile
// (a codec): transparent, line and tlv, each in its own file.
//
// Each link costs one goroutine and a 512-byte buffer; a socket that has not
// registered yet only a buffer the size of a registration. Timers are the
// socket's read deadline, so an idle link costs no CPU.
package dtu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/comsrv/channel"
	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/control"
	"github.com/voltedge/voltedge/comsrv/directory"
	"github.com/voltedge/voltedge/comsrv/poll"
	"github.com/voltedge/voltedge/comsrv/sink"
	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/logging"
	"github.com/voltedge/voltedge/internal/redisconn"
)

// Controls is where links register for control commands and report their outcomes.
type Controls interface {
	control.Registry
	control.Reporter
}

// Option configures a Server.
type Option func(*Server)

// WithControls lets links execute control commands.
func WithControls(c Controls) Option { return func(s *Server) { s.ctl = c } }

// WithDirectory makes the server find channels in d; without it the
// server makes its own from the configuration.
func WithDirectory(d *directory.Directory) Option { return func(s *Server) { s.dir = d } }

// WithRedis gives the server a client for its subscriptions (the result
// channels of line listeners).
func WithRedis(c rueidis.Client) Option { return func(s *Server) { s.client = c } }

// Server accepts DTU connections on every configured listener and runs one
// link per registered DTU.
type Server struct {
	cfg       *config.Config // listener, Modbus and frame settings, fixed at start
	listeners []*listener
	sink      *sink.Sink
	ctl       Controls
	client    rueidis.Client
	log       *slog.Logger

	dir     *directory.Directory
	conns   atomic.Int64
	wg      sync.WaitGroup
	events  *budget
	secrets atomic.Pointer[secretIndex] // of the listeners and of the channels of the files

	mu       sync.Mutex
	links    map[string]*link             // channel id → active link
	counters map[string]*channel.Counters // channel id → counters, kept across reconnects
}

// listener is one DTU server address with its profile.
type listener struct {
	cfg        *config.DTU
	pending    *pending // sockets not registered yet
	registered int      // links attached (under Server.mu), at most cfg.MaxConnections
	refusals   *logging.Limited
}

// New prepares a server for cfg. Plans are compiled once per channel setting.
func New(cfg *config.Config, sk *sink.Sink, log *slog.Logger, opts ...Option) (*Server, error) {
	s := &Server{
		cfg:      cfg,
		sink:     sk,
		log:      log,
		links:    make(map[string]*link),
		counters: make(map[string]*channel.Counters),
		events:   newBudget(cfg.Events.RefusalsPerSec),
	}
	for _, o := range opts {
		o(s)
	}
	for _, l := range cfg.AllListeners() {
		s.listeners = append(s.listeners, &listener{cfg: l, pending: newPending(l.MaxUnregistered, l.MaxUnregisteredPerIP),
			refusals: logging.NewLimited(log, l.RefuseLogInterval.Duration)})
	}
	s.secrets.Store(newSecretIndex(cfg.ChannelList, s.listeners))
	if s.dir == nil {
		d, err := directory.New(cfg, sk, log)
		if err != nil {
			return nil, err
		}
		s.dir = d
	}
	return s, nil
}

// Reload replaces the DTU channels with those of list, and the templates
// with templates. Links of unchanged
// channels keep running; links of changed or removed channels are closed
// (their DTUs reconnect and get the new definition). It returns the
// numbers of DTU channels added, changed and removed.
func (s *Server) Reload(list []*config.Channel, templates map[string]*config.Template) (added, changed, removed int, err error) {
	added, changed, removed, closing, err := s.dir.Reload(list, templates)
	if err != nil {
		return 0, 0, 0, err
	}
	s.secrets.Store(newSecretIndex(list, s.listeners))
	s.closeLinks(func(l *link) string {
		if slices.Contains(closing, l.ch.ID) {
			return directory.ReasonReloaded
		}
		return ""
	})
	return added, changed, removed, nil
}

// closeLinks closes the links for which reason returns a reason (not ""),
// which becomes their disconnect reason.
func (s *Server) closeLinks(reason func(*link) string) {
	s.mu.Lock()
	type closing struct {
		l      *link
		reason string
	}
	var cl []closing
	for _, l := range s.links {
		if r := reason(l); r != "" {
			cl = append(cl, closing{l, r})
		}
	}
	s.mu.Unlock()
	for _, c := range cl {
		c.l.closedFor.Store(&c.reason)
		_ = c.l.conn.Close()
	}
}

// Online is the number of registered links.
func (s *Server) Online() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.links)
}

// Connections is the number of open sockets, registered or not.
func (s *Server) Connections() int64 { return s.conns.Load() }

// Unregistered is the number of open sockets that have not registered yet.
func (s *Server) Unregistered() int {
	n := 0
	for _, l := range s.listeners {
		n += l.pending.size()
	}
	return n
}

// ListenAndServe listens on every configured address and serves until ctx is cancelled.
func (s *Server) ListenAndServe(ctx context.Context) error {
	var lc net.ListenConfig
	lns := make([]net.Listener, 0, len(s.listeners))
	for _, l := range s.listeners {
		ln, err := lc.Listen(ctx, "tcp", l.cfg.Listen)
		if err != nil {
			for _, o := range lns {
				_ = o.Close()
			}
			return fmt.Errorf("dtu listener %s: listen %s: %w", l.cfg.Name, l.cfg.Listen, err)
		}
		lns = append(lns, ln)
	}
	return s.Serve(ctx, lns...)
}

// Serve accepts connections until ctx is cancelled, then closes every link
// and waits for them. lns[i] serves the i-th listener of the configuration
// ([dtu] first, then each [[listener]]); listeners without one are not served.
func (s *Server) Serve(ctx context.Context, lns ...net.Listener) error {
	if len(lns) > len(s.listeners) {
		return fmt.Errorf("dtu serve: %d listeners given, %d configured", len(lns), len(s.listeners))
	}
	errc := make(chan error, len(lns))
	var accept sync.WaitGroup
	for i, ln := range lns {
		accept.Add(1)
		go func() {
			defer accept.Done()
			errc <- s.acceptLoop(ctx, s.listeners[i], ln)
		}()
	}
	if s.client != nil {
		s.startLineResults(ctx)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.runRegistry(ctx)
		}()
	}
	accept.Wait()
	s.wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) acceptLoop(ctx context.Context, l *listener, ln net.Listener) error {
	s.log.Info("dtu listener started", "listener", l.cfg.Name, "profile", l.cfg.Profile, "addr", ln.Addr().String(),
		"max_connections", l.cfg.MaxConnections, "max_unregistered", l.cfg.MaxUnregistered, "allow", len(l.cfg.AllowNets), "replace", l.cfg.Replace)
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	backoff := redisconn.Backoff{Min: 5 * time.Millisecond, Max: time.Second}
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("dtu listener %s: accept: %w", l.cfg.Name, err)
			}
			// Out of file descriptors and the like: back off, never spin.
			d := backoff.Next()
			s.log.Warn("dtu accept failed", "listener", l.cfg.Name, "err", err, "retry_in", d)
			redisconn.Sleep(ctx, d)
			continue
		}
		backoff.Reset()

		ip := addrOf(c.RemoteAddr())
		if !config.Allowed(l.cfg.AllowNets, ip) {
			_ = c.Close()
			s.refuse(l, reasonNotAllowed, "", c.RemoteAddr().String(), "")
			continue
		}
		w := l.pending.admit(c, ip)
		if w == nil {
			_ = c.Close()
			s.refuse(l, reasonPerIP, "", c.RemoteAddr().String(), "")
			continue
		}
		s.conns.Add(1)
		s.wg.Add(1)
		go s.handle(ctx, l, c, w)
	}
}

// refuse logs (rate-limited) and records (within the event budget) a refused connection.
func (s *Server) refuse(l *listener, reason, detail, remote, id string) {
	l.logRefusal(reason, detail, remote, id)
	if s.events.take(time.Now()) {
		r := reason
		if detail != "" {
			r += ": " + detail
		}
		s.sink.Event(sink.Event{Type: contract.EventRefused, Listener: l.cfg.Name, Registration: id, Remote: remote, Reason: r, At: time.Now()})
	}
}

func (s *Server) handle(ctx context.Context, l *listener, c net.Conn, w *waiter) {
	defer s.wg.Done()
	defer s.conns.Add(-1)
	defer c.Close()
	defer l.pending.leave(w)
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()

	// Until the DTU has registered, this goroutine's stack stays small: the
	// link is set up and run by serve.
	cd := newCodec(l.cfg)
	r := s.readRegistration(l, c, cd)
	l.pending.leave(w)
	s.registered(ctx, l, c, w, cd, r)
}

// registration is what readRegistration read: the registration as sent,
// its bytes for the frame log and the bytes read after it, or err.
type registration struct {
	sent      string
	raw, rest []byte
	err       error
}

// registered refuses a failed registration or serves the DTU.
func (s *Server) registered(ctx context.Context, l *listener, c net.Conn, w *waiter, cd codec, r *registration) {
	switch {
	case r.err != nil && w.evicted.Load():
		s.refuse(l, reasonEvicted, "", c.RemoteAddr().String(), "")
	case r.err != nil:
		s.refuse(l, "bad registration", s.registrationDetail(r.err), c.RemoteAddr().String(), "")
	default:
		s.serve(ctx, l, c, cd, r.sent, r.raw, r.rest)
	}
}

// serve runs the link of a DTU that sent the registration sent (its bytes
// regBytes, followed by rest), once its channel is found and admitted.
func (s *Server) serve(ctx context.Context, l *listener, c net.Conn, cd codec, sent string, regBytes, rest []byte) {
	remote := c.RemoteAddr().String()
	id, ch, plan, cut := s.resolve(l, sent)
	if ch == nil {
		s.refuse(l, reasonUnknownID, "", remote, id)
		return
	}
	if !config.Allowed(ch.AllowNets, addrOf(c.RemoteAddr())) {
		s.refuse(l, reasonChannelNotAllowed, "", remote, id)
		return
	}
	if cut {
		regBytes = []byte(id) // the frame log never shows a secret
	}
	f := newCodecFramer(cd)
	f.push(rest)
	if !f.c.polls() {
		plan = nil
	}
	if plan == nil {
		plan = &poll.Plan{}
	}
	lk := newLink(s, l, c, ch, id, remote, f)
	lk.regFrame = regBytes
	st, err := s.attach(lk)
	if err != nil {
		s.refuse(l, err.Error(), "", remote, id)
		return
	}
	lk.core = channel.New(ch.ID, plan, st, s.settings(l), s.sink, s.ctl, s.log)
	reason := lk.run(ctx)
	// The socket closed under the link shows first as whatever call failed.
	switch {
	case lk.replaced.Load():
		reason = "replaced"
	case lk.closedFor.Load() != nil:
		reason = *lk.closedFor.Load()
	}
	s.detach(lk, reason)
}

// readRegistration reads until a complete registration is buffered, within
// the registration timeout, and sends the profile's reply. It reads into a
// buffer the size of the longest registration (the link's buffer is only
// made once the DTU has registered). Its stack frame is kept small: many
// goroutines wait in it.
func (s *Server) readRegistration(l *listener, c net.Conn, cd codec) *registration {
	if err := c.SetReadDeadline(time.Now().Add(l.cfg.RegistrationTimeout.Duration)); err != nil {
		return &registration{err: err}
	}
	buf := make([]byte, 0, cd.regSize())
	for {
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 {
			if r := s.parseRegistration(l, c, cd, buf); r != nil {
				return r
			}
		}
		if err != nil {
			return readError(l, err)
		}
	}
}

// parseRegistration parses the bytes read so far: nil asks for more.
func (s *Server) parseRegistration(l *listener, c net.Conn, cd codec, buf []byte) *registration {
	id, used, reply, err := cd.register(buf)
	switch {
	case errors.Is(err, errNeedMore) && len(buf) == cap(buf):
		return &registration{err: fmt.Errorf("no registration within %d bytes", cap(buf))}
	case errors.Is(err, errNeedMore):
		return nil
	case err != nil:
		return &registration{err: err}
	}
	if len(reply) > 0 {
		if err := c.SetWriteDeadline(time.Now().Add(l.cfg.WriteTimeout.Duration)); err != nil {
			return &registration{err: err}
		}
		if _, err := c.Write(reply); err != nil {
			return &registration{err: fmt.Errorf("answer registration: %w", err)}
		}
	}
	return &registration{sent: id, raw: buf[:used:used], rest: buf[used:]}
}

// readError is the registration error of a failed read.
func readError(l *listener, err error) *registration {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &registration{err: fmt.Errorf("no registration within %s", l.cfg.RegistrationTimeout.Duration)}
	}
	return &registration{err: fmt.Errorf("read registration: %w", err)}
}

// provision serves an id that no channel lists as a new channel when the
// listener provisions unknown ids; nil otherwise.
func (s *Server) provision(l *listener, id string) (*config.Channel, *poll.Plan) {
	if l.cfg.UnknownIDs != "provision" {
		return nil, nil
	}
	ch, p := s.dir.Provision(id, l.cfg.ProvisionTemplate)
	if ch != nil && ch.Secret != "" {
		return nil, nil // found meanwhile, and its secret was not sent
	}
	if ch != nil {
		s.log.Info("provisioned channel", "channel", id, "listener", l.cfg.Name, "template", ch.Template)
	}
	return ch, p
}

// attach makes l the channel's active link. An older link of the same channel
// is closed first and waited for, so that a channel never has two pollers,
// when the replacement policy lets l replace it (else errInUse). A link that
// replaces none on its listener must fit its max_connections (else
// errLimit). The channel's counters carry over.
func (s *Server) attach(l *link) (*channel.Counters, error) {
	s.mu.Lock()
	old := s.links[l.ch.ID]
	if old != nil && !mayReplace(l, old, time.Now()) {
		s.mu.Unlock()
		return nil, errInUse
	}
	if (old == nil || old.lst != l.lst) && l.lst.registered >= l.lst.cfg.MaxConnections {
		s.mu.Unlock()
		return nil, errLimit
	}
	l.lst.registered++
	s.links[l.ch.ID] = l
	st := s.counters[l.ch.ID]
	if st == nil {
		st = &channel.Counters{}
		s.counters[l.ch.ID] = st
	}
	s.mu.Unlock()
	if old != nil {
		old.replaced.Store(true)
		_ = old.conn.Close()
		select {
		case <-old.done:
			st.Replacements++ // the old link no longer touches the counters
		case <-time.After(5 * time.Second):
			s.log.Error("replaced link did not stop in time", "channel", l.ch.ID)
		}
		s.log.Info("dtu link replaced", "channel", l.ch.ID, "registration", quoteID(l.regID), "old_remote", old.remote, "new_remote", l.remote)
		s.sink.Event(sink.Event{Type: contract.EventReplaced, Channel: l.ch.ID, Listener: l.lst.cfg.Name, Registration: l.regID, Remote: l.remote, Reason: "replaced " + old.remote, At: time.Now()})
	}
	if s.ctl != nil {
		s.ctl.Attach(l.ch.ID, l.inbox)
	}
	return st, nil
}

// detach removes l unless a newer link replaced it, and records the channel offline.
func (s *Server) detach(l *link, reason string) {
	s.mu.Lock()
	mine := s.links[l.ch.ID] == l
	if mine {
		delete(s.links, l.ch.ID)
	}
	l.lst.registered--
	s.mu.Unlock()
	l.inbox.Close()
	if l.fl.ctl != nil {
		l.endControl(contract.Outcome{Status: contract.Failed, Message: "link closed while the command was in flight: " + reason})
	}
	if s.ctl != nil {
		s.ctl.Detach(l.ch.ID, l.inbox)
		l.inbox.Drain(s.ctl, contract.Outcome{Status: contract.Offline, Message: "link closed: " + reason})
	}
	l.dropLines(reason)
	now := time.Now()
	if mine {
		l.core.Down(now, reason)
		s.log.Info("dtu offline", "channel", l.ch.ID, "registration", quoteID(l.regID), "remote", l.remote, "reason", reason)
	} else {
		l.core.FlushFrames(now)
	}
	close(l.done)
}

// settings are the channel settings of links of listener l.
func (s *Server) settings(l *listener) channel.Settings {
	return channel.Settings{
		BackoffAfter:    s.cfg.Modbus.BackoffAfter,
		BackoffCooldown: s.cfg.Modbus.BackoffCooldown.Duration,
		StatusInterval:  l.cfg.StatusInterval.Duration,
		FramesKeep:      s.cfg.Frames.Keep,
		FramesFlush:     s.cfg.Frames.Flush.Duration,
	}
}

// linkFor returns the active link of the channel registered as id, and whether such a channel exists.
func (s *Server) linkFor(id string) (*link, bool) {
	ch, _ := s.dir.Find(id)
	if ch == nil {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.links[ch.ID], true
}

// logRefusal logs one refused connection (or line message), at most once
// per refuse_log_interval per reason, with a count of the others.
func (l *listener) logRefusal(reason, detail, remote, id string) {
	attrs := []any{"reason", reason, "listener", l.cfg.Name}
	if remote != "" {
		attrs = append(attrs, "remote", remote)
	}
	if detail != "" {
		attrs = append(attrs, "detail", detail)
	}
	if id != "" {
		attrs = append(attrs, "registration", quoteID(id))
	}
	l.refusals.LogKey(slog.LevelWarn, reason, "dtu connection refused", attrs...)
}

// budget is a token bucket: at most rate events per second (burst rate).
type budget struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newBudget(perSec int) *budget {
	return &budget{rate: float64(perSec), tokens: float64(perSec)}
}

// take reports whether one more event fits the budget at now.
func (b *budget) take(now time.Time) bool {
	if b == nil || b.rate <= 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
