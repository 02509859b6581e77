package ws

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	fws "github.com/fasthttp/websocket"
	"github.com/gofiber/contrib/websocket"

	"github.com/voltedge/voltedge/modsrv/api"
)

// client is one connection. Its subscription sets are guarded by the hub's
// mutex; the queue is the only way to write to it.
type client struct {
	hub   *Hub
	conn  *fws.Conn
	nc    net.Conn
	user  string    // "" when not authorised
	creds [2]string // the upgrade's Authorization and Cookie headers, for Options.StillValid

	queue chan []byte
	kill  chan struct{} // closed by drop: the writer closes the connection
	done  chan struct{} // closed when the reader ends
	once  sync.Once
	code  int // close code and text, set by drop before kill is closed
	text  string

	ctx      context.Context // ends with the connection: in-flight commands stop
	cancel   context.CancelFunc
	inFlight atomic.Int32

	// Guarded by hub.mu.
	models   map[string]struct{}
	channels map[string]struct{}
	alarms   bool
}

// serve runs one connection: it is the client's reader, and starts its writer.
func (h *Hub) serve(wc *websocket.Conn) {
	user, _ := wc.Locals(localUser).(string)
	creds, _ := wc.Locals(localCreds).([2]string)
	s, _ := wc.Locals(localSlot).(*slot)
	if s == nil || !s.claim() {
		return // the slot expired: the client is not counted
	}
	defer s.release()
	c := &client{
		creds:    creds,
		hub:      h,
		conn:     wc.Conn,
		nc:       rawConn(wc.Conn.NetConn()),
		user:     user,
		queue:    make(chan []byte, h.opt.QueueSize),
		kill:     make(chan struct{}),
		done:     make(chan struct{}),
		models:   make(map[string]struct{}),
		channels: make(map[string]struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	h.register(c)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	c.readLoop()
	c.cancel()
	close(c.done)
	<-writerDone
	h.unregister(c)
	_ = c.conn.Close()
}

// rawConn returns the connection under fasthttp's hijacked one, whose
// Close does nothing (fasthttp closes it when the handler returns): closing
// the raw connection is what ends a blocked read.
func rawConn(nc net.Conn) net.Conn {
	if u, ok := nc.(interface{ UnsafeConn() net.Conn }); ok && u.UnsafeConn() != nil {
		return u.UnsafeConn()
	}
	return nc
}

// readLoop reads the client's messages until the connection ends.
func (c *client) readLoop() {
	opt := c.hub.opt
	c.conn.SetReadLimit(int64(opt.MaxMessageBytes))
	wait := 2 * opt.PingInterval
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(wait))
	})
	for {
		kind, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(wait))
		if kind != fws.TextMessage {
			c.fail("", "text messages only")
			continue
		}
		c.hub.handle(c, data)
	}
}

// writeLoop sends the queued messages and pings until the reader ends or
// the client is dropped.
func (c *client) writeLoop() {
	opt := c.hub.opt
	ping := time.NewTicker(opt.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.kill:
			c.closeNow()
			return
		default:
		}
		select {
		case msg := <-c.queue:
			_ = c.conn.SetWriteDeadline(time.Now().Add(opt.WriteTimeout))
			if err := c.conn.WriteMessage(fws.TextMessage, msg); err != nil {
				c.reset() // ends the reader
				return
			}
		case <-ping.C:
			if err := c.conn.WriteControl(fws.PingMessage, nil, time.Now().Add(opt.WriteTimeout)); err != nil {
				c.reset()
				return
			}
		case <-c.kill:
			c.closeNow()
			return
		case <-c.done:
			return
		}
	}
}

// closeNow sends the close frame set by drop (if the socket takes it within
// a second) and closes the connection. When the socket does not take it,
// the client has stopped reading: the connection is reset, so that the
// kernel does not keep its unsent data.
func (c *client) closeNow() {
	if err := c.conn.WriteControl(fws.CloseMessage, fws.FormatCloseMessage(c.code, c.text), time.Now().Add(time.Second)); err != nil {
		c.reset()
		return
	}
	_ = c.nc.Close()
}

// reset closes the connection after a failed write, discarding unsent data.
func (c *client) reset() {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.nc.Close()
}

// enqueue queues msg without blocking. A full queue drops the client.
// It reports whether msg was queued.
func (c *client) enqueue(msg []byte) bool {
	select {
	case <-c.done:
		return false
	case <-c.kill:
		return false
	default:
	}
	select {
	case c.queue <- msg:
		return true
	default:
		if c.drop(CloseTooSlow, TextTooSlow) {
			c.hub.slowDrops.Add(1)
			c.hub.log.Warn("ws: client dropped: send queue full", "remote", c.nc.RemoteAddr().String(), "queue", cap(c.queue))
		}
		return false
	}
}

// drop makes the writer close the connection with code and text. A write
// in progress is cut short. It reports whether this call dropped the client.
func (c *client) drop(code int, text string) bool {
	dropped := false
	c.once.Do(func() {
		c.code, c.text = code, text
		close(c.kill)
		_ = c.nc.SetWriteDeadline(time.Now()) // a writer blocked on a full socket gives up now
		dropped = true
	})
	return dropped
}

// send marshals v and queues it.
func (c *client) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.hub.log.Error("ws: marshal message", "err", err)
		return
	}
	if c.enqueue(b) {
		c.hub.sent.Add(1)
	}
}

// fail answers a client message that cannot be served.
func (c *client) fail(ref, msg string) {
	c.hub.badMessages.Add(1)
	c.send(errorMessage{Type: TypeError, RequestRef: ref, Message: msg})
}

// handle serves one message of c.
func (h *Hub) handle(c *client, data []byte) {
	r, err := parseRequest(data, h.opt.MaxSubscriptions)
	if err != nil {
		ref := ""
		if r != nil {
			ref = r.RequestRef
		}
		if r != nil && r.Type == TypeCommand {
			h.commandsRefused.Add(1)
			h.badMessages.Add(1)
			c.send(ackMessage{Type: TypeAck, RequestRef: ref, Code: api.StatusCode(http.StatusBadRequest), Reason: err.Error()})
			return
		}
		c.fail(ref, err.Error())
		return
	}
	switch r.Type {
	case TypeSubscribe:
		h.subscribe(c, r)
	case TypeUnsubscribe:
		h.unsubscribe(c, r)
	case TypeCommand:
		h.command(c, r)
	}
}

// subscribe adds r's models, channels and alarms to c's subscription, all
// or nothing. Ids that are not known models or channels are not kept: the
// confirmation lists them as unknown.
func (h *Hub) subscribe(c *client, r *request) {
	models, unknown := known(r.Models, h.known.model, nil)
	channels, unknown := known(r.Channels, h.known.channel, unknown)
	meta := h.modelMeta(models)
	h.mu.Lock()
	nm, nc := countNew(c.models, models), countNew(c.channels, channels)
	switch {
	case len(c.models)+nm > h.opt.MaxSubscriptions:
		h.mu.Unlock()
		c.fail(r.RequestRef, "subscription limit reached: at most "+strconv.Itoa(h.opt.MaxSubscriptions)+" models")
		return
	case len(c.channels)+nc > h.opt.MaxSubscriptions:
		h.mu.Unlock()
		c.fail(r.RequestRef, "subscription limit reached: at most "+strconv.Itoa(h.opt.MaxSubscriptions)+" channels")
		return
	case h.subs+nm+nc > h.opt.MaxTotalSubscriptions:
		h.mu.Unlock()
		c.fail(r.RequestRef, "server subscription limit reached: at most "+strconv.Itoa(h.opt.MaxTotalSubscriptions)+" for all clients")
		return
	}
	h.subs += nm + nc
	for _, m := range models {
		c.models[m] = struct{}{}
		addSub(h.models, m, c)
	}
	for _, ch := range channels {
		c.channels[ch] = struct{}{}
		addSub(h.channels, ch, c)
	}
	if r.Alarms != nil && *r.Alarms {
		c.alarms = true
		h.alarms[c] = struct{}{}
	}
	msg := c.subscription()
	h.mu.Unlock()
	msg.Unknown = unknown
	msg.Meta = meta
	c.send(msg)
}

// known returns the catalog's copies of the ids that lookup knows, and
// appends the others to unknown.
func known(ids []string, lookup func(string) (string, bool), unknown []string) (have, _ []string) {
	have = make([]string, 0, len(ids))
	for _, id := range ids {
		if s, ok := lookup(id); ok {
			have = append(have, s)
		} else {
			unknown = append(unknown, id)
		}
	}
	return have, unknown
}

// unsubscribe removes r's models and channels, and alarms when r has
// "alarms": true.
func (h *Hub) unsubscribe(c *client, r *request) {
	h.mu.Lock()
	for _, m := range r.Models {
		if _, ok := c.models[m]; ok {
			delete(c.models, m)
			removeSub(h.models, m, c)
			h.subs--
		}
	}
	for _, ch := range r.Channels {
		if _, ok := c.channels[ch]; ok {
			delete(c.channels, ch)
			removeSub(h.channels, ch, c)
			h.subs--
		}
	}
	if r.Alarms != nil && *r.Alarms {
		c.alarms = false
		delete(h.alarms, c)
	}
	msg := c.subscription()
	h.mu.Unlock()
	c.send(msg)
}

// subscription describes c's subscription; the caller holds hub.mu.
func (c *client) subscription() subscribedMessage {
	m := subscribedMessage{Type: TypeSubscribed, Models: sortedKeys(c.models), Channels: sortedKeys(c.channels), Alarms: c.alarms}
	return m
}

func countNew(have map[string]struct{}, ids []string) int {
	n := 0
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if _, ok := have[id]; ok {
			continue
		}
		if _, ok := seen[id]; ok {
			continue
		}
		seen[id] = struct{}{}
		n++
	}
	return n
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
