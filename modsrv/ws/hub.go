// Package ws is modsrv's WebSocket endpoint (/ws): clients subscribe to
// models, channels and alarms and receive them as JSON, and send control
// commands that are answered with an ack and then a response.
//
// One pattern subscription to update:* and one reader of the alarm stream
// serve every client. Each client has a reader, a writer and a bounded send
// queue; a client whose queue is full is dropped (close 1008 "too slow"), so
// a slow client never slows the others.
package ws

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/modsrv/links"
)

// Defaults of Options.
const (
	DefaultQueueSize        = 256
	DefaultMaxMessageBytes  = 16 << 10
	DefaultMaxSubscriptions = 1000
	DefaultMaxClients       = 1000
	DefaultMaxClientsPerIP  = 50
	DefaultMaxTotalSubs     = 100000
	DefaultChannelInterval  = 2 * time.Second
	DefaultCommandTTL       = 30 * time.Second
	DefaultCommandWait      = DefaultCommandTTL + 5*time.Second
	DefaultMaxInFlight      = 8
	DefaultWriteTimeout     = 10 * time.Second
	DefaultPingInterval     = 30 * time.Second
)

// Close codes and texts sent to dropped clients.
const (
	CloseTooSlow  = 1008
	TextTooSlow   = "too slow"
	CloseShutdown = 1001
	TextShutdown  = "server shutting down"
)

// localUser is the fiber.Ctx local that carries the authorised user from
// the upgrade request to the connection.
const localUser = "voltedge.ws.user"

// localSlot carries the client's *slot from admit to the connection.
const localSlot = "voltedge.ws.slot"

// localCreds carries the upgrade request's Authorization and Cookie headers.
const localCreds = "voltedge.ws.creds"

// Options configures a Hub. Zero values take the defaults.
type Options struct {
	// Authorize checks the credentials of the upgrade request (bearer
	// token, session cookie). A token given as ?token= is presented to it
	// as an Authorization: Bearer header, since browsers cannot set headers
	// on a WebSocket. Nil means no client is authorised: every command is
	// refused.
	Authorize func(c *fiber.Ctx) (user string, ok bool)
	// StillValid, if set, is asked before each command whether the
	// credentials the socket was opened with (its Authorization and Cookie
	// headers) still hold, so that a logout or an expired session also ends
	// the socket's right to send commands.
	StillValid func(authorization, cookie string) bool
	// RequireAuth refuses upgrades without valid credentials (401), for
	// read_open = false.
	RequireAuth bool
	// Origins are the origins (scheme://host[:port]) allowed besides the
	// same origin; "*" allows every origin. A request without an Origin
	// header (not a browser) is allowed.
	Origins []string
	// QueueSize is each client's send queue, in messages (default 256).
	QueueSize int
	// MaxMessageBytes bounds one message from a client (default 16 KiB);
	// a longer one closes the connection (1009).
	MaxMessageBytes int
	// MaxSubscriptions bounds the models, and separately the channels, one
	// client subscribes to (default 1000).
	MaxSubscriptions int
	// MaxClients bounds the connected clients (default 1000); more are
	// refused with 503. A slot is taken before the upgrade completes, so
	// the bound is exact.
	MaxClients int
	// ReservedClients of MaxClients are kept for clients with credentials
	// (default a tenth of MaxClients; negative: none).
	ReservedClients int
	// MaxClientsPerIP bounds the clients without credentials from one
	// remote address (default 50); more are refused with 429.
	MaxClientsPerIP int
	// MaxTotalSubscriptions bounds the model and channel subscriptions of
	// all clients together (default 100000).
	MaxTotalSubscriptions int
	// CatalogInterval is how often the known models and channels are read
	// again (default 30s). Only known ids can be subscribed to.
	CatalogInterval time.Duration
	// ChannelInterval is how often the status of subscribed channels is
	// sent (default 2s); negative disables channel status.
	ChannelInterval time.Duration
	// CommandTTL is the validity of a command given to send_control (default 30s).
	CommandTTL time.Duration
	// CommandWait is how long the outcome of a command is awaited before
	// the response says timeout (default CommandTTL + 5s).
	CommandWait time.Duration
	// Results hands commands their outcomes; nil means the hub makes its
	// own and runs it in Run. Share one per process.
	Results *contract.Results
	// Links is the link index whose point metadata (unit, type) the
	// subscribed answer carries; nil: none.
	Links *links.Index
	// MaxInFlight bounds the commands one client waits for at a time (default 8).
	MaxInFlight int
	// WriteTimeout bounds one write to a client (default 10s).
	WriteTimeout time.Duration
	// PingInterval is how often clients are pinged (default 30s); a client
	// that answers nothing within two intervals is closed.
	PingInterval time.Duration
}

func (o Options) withDefaults() Options {
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.MaxSubscriptions <= 0 {
		o.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if o.MaxClients <= 0 {
		o.MaxClients = DefaultMaxClients
	}
	switch {
	case o.ReservedClients == 0:
		o.ReservedClients = o.MaxClients / 10
	case o.ReservedClients < 0:
		o.ReservedClients = 0
	case o.ReservedClients > o.MaxClients:
		o.ReservedClients = o.MaxClients
	}
	if o.MaxClientsPerIP <= 0 {
		o.MaxClientsPerIP = DefaultMaxClientsPerIP
	}
	if o.MaxTotalSubscriptions <= 0 {
		o.MaxTotalSubscriptions = DefaultMaxTotalSubs
	}
	if o.CatalogInterval <= 0 {
		o.CatalogInterval = DefaultCatalogInterval
	}
	if o.ChannelInterval == 0 {
		o.ChannelInterval = DefaultChannelInterval
	}
	if o.CommandTTL < time.Millisecond {
		o.CommandTTL = DefaultCommandTTL
	}
	if o.CommandWait <= 0 {
		o.CommandWait = o.CommandTTL + 5*time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	return o
}

// Stats counts what a Hub did since it was made.
type Stats struct {
	Clients         int    // connected now
	Accepted        uint64 // connections upgraded
	Refused         uint64 // upgrades refused: origin, credentials, too many clients
	SlowDrops       uint64 // clients dropped because their send queue was full
	Updates         uint64 // update:* messages received from Redis
	Alarms          uint64 // alarm events read from the stream
	Sent            uint64 // messages queued to clients
	BadMessages     uint64 // client messages answered with an error
	Commands        uint64 // commands accepted (queued with send_control)
	CommandsRefused uint64 // commands refused (not authorised, invalid, Redis error)
}

// Hub serves /ws. It is safe for concurrent use.
type Hub struct {
	client  rueidis.Client
	sender  *contract.Sender
	results *contract.Results // run by Run when the hub made it
	opt     Options
	log     *slog.Logger
	origin  map[string]bool
	anyOK   bool

	mu       sync.RWMutex
	clients  map[*client]struct{}
	models   map[string]map[*client]struct{}
	channels map[string]map[*client]struct{}
	alarms   map[*client]struct{}
	subs     int // entries of models and channels, bounded by MaxTotalSubscriptions

	slots slots   // clients, counted before the upgrade
	known catalog // the models and channels that can be subscribed to

	accepted, refused, slowDrops, updates, alarmsRead, sent atomic.Uint64
	badMessages, commands, commandsRefused                  atomic.Uint64
}

// New makes a Hub that reads Redis through rc; log may be nil.
func New(rc rueidis.Client, opt Options, log *slog.Logger) *Hub {
	if log == nil {
		log = slog.Default()
	}
	opt = opt.withDefaults()
	results := opt.Results
	own := results == nil
	if own {
		results = contract.NewResults(rc, log)
	}
	h := &Hub{
		client:   rc,
		sender:   contract.NewSender(rc, lualib.NewCaller(rc, log), results),
		opt:      opt,
		log:      log,
		origin:   make(map[string]bool),
		clients:  make(map[*client]struct{}),
		models:   make(map[string]map[*client]struct{}),
		channels: make(map[string]map[*client]struct{}),
		alarms:   make(map[*client]struct{}),
		slots:    slots{perIP: make(map[string]int)},
	}
	if own {
		h.results = results
	}
	for _, o := range h.opt.Origins {
		if o == "*" {
			h.anyOK = true
			continue
		}
		h.origin[normalOrigin(o)] = true
	}
	return h
}

// Mount registers GET /ws on r.
func (h *Hub) Mount(r fiber.Router) {
	r.Get("/ws", h.admit, websocket.New(h.serve, websocket.Config{
		Origins:         []string{"*"}, // checked by admit
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		RecoverHandler: func(c *websocket.Conn) {
			if err := recover(); err != nil {
				h.log.Error("ws: connection handler panicked", "err", err)
			}
		},
	}))
}

// Clients returns the number of connected clients.
func (h *Hub) Clients() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.clients)
}

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	return Stats{
		Clients:         h.Clients(),
		Accepted:        h.accepted.Load(),
		Refused:         h.refused.Load(),
		SlowDrops:       h.slowDrops.Load(),
		Updates:         h.updates.Load(),
		Alarms:          h.alarmsRead.Load(),
		Sent:            h.sent.Load(),
		BadMessages:     h.badMessages.Load(),
		Commands:        h.commands.Load(),
		CommandsRefused: h.commandsRefused.Load(),
	}
}

// Run relays Redis to the clients until ctx ends, then closes every client
// (1001) and returns.
func (h *Hub) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); h.runCatalog(ctx) }()
	go func() { defer wg.Done(); h.relayUpdates(ctx) }()
	go func() { defer wg.Done(); h.relayAlarms(ctx) }()
	if h.results != nil {
		wg.Add(1)
		go func() { defer wg.Done(); h.results.Run(ctx) }()
	}
	if h.opt.ChannelInterval > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); h.relayChannels(ctx) }()
	}
	<-ctx.Done()
	h.mu.RLock()
	for c := range h.clients {
		c.drop(CloseShutdown, TextShutdown)
	}
	h.mu.RUnlock()
	wg.Wait()
}

// admit checks an upgrade request before it is upgraded: a WebSocket
// upgrade, an allowed origin, credentials, room for one more client.
func (h *Hub) admit(c *fiber.Ctx) error {
	if !websocket.IsWebSocketUpgrade(c) {
		return sendError(c, fiber.StatusBadRequest, "bad_request", "GET /ws needs a WebSocket upgrade")
	}
	if o := c.Get(fiber.HeaderOrigin); o != "" && !h.originAllowed(o, string(c.Request().Host()), c.Protocol()) {
		h.refused.Add(1)
		return sendError(c, fiber.StatusForbidden, "forbidden", "origin "+quoteClip(o)+" is not allowed")
	}
	if tok := c.Query("token"); tok != "" && c.Get(fiber.HeaderAuthorization) == "" {
		c.Request().Header.Set(fiber.HeaderAuthorization, "Bearer "+tok)
	}
	user, ok := "", false
	if h.opt.Authorize != nil {
		user, ok = h.opt.Authorize(c)
	}
	if !ok && h.opt.RequireAuth {
		// A bad token answers 401 here even while its address is over the
		// limit of failed attempts (where REST answers 429): the upgrade is
		// refused either way, and the client learns its credentials failed.
		h.refused.Add(1)
		msg := "a bearer token or a login is required"
		if c.Get(fiber.HeaderAuthorization) != "" {
			msg = "invalid or expired credentials"
		}
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="voltedge"`)
		return sendError(c, fiber.StatusUnauthorized, "unauthorized", msg)
	}
	s, status, why := h.reserve(c.IP(), ok)
	if s == nil {
		h.refused.Add(1)
		code := "unavailable"
		if status == fiber.StatusTooManyRequests {
			code = "too_many_requests"
		}
		return sendError(c, status, code, why)
	}
	c.Locals(localSlot, s)
	if ok {
		if user == "" {
			user = "?"
		}
		c.Locals(localUser, user)
		c.Locals(localCreds, [2]string{c.Get(fiber.HeaderAuthorization), c.Get(fiber.HeaderCookie)})
	}
	err := c.Next()
	if err != nil || c.Response().StatusCode() != fiber.StatusSwitchingProtocols {
		s.release() // not upgraded
		return err
	}
	// The handler claims the slot; if the 101 answer cannot be written it
	// never runs, and the slot is released after the grace.
	time.AfterFunc(handshakeGrace, s.expire)
	return nil
}

// originAllowed reports whether a browser at origin may connect: same
// host as the request, or listed.
func (h *Hub) originAllowed(origin, host, scheme string) bool {
	if h.anyOK {
		return true
	}
	n := normalOrigin(origin)
	if h.origin[n] {
		return true
	}
	u, err := url.Parse(n)
	if err != nil || u.Host == "" {
		return false
	}
	return stripDefaultPort(u.Host, u.Scheme) == stripDefaultPort(strings.ToLower(host), originScheme(scheme))
}

// normalOrigin lower-cases an origin and drops a trailing slash.
func normalOrigin(o string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(o)), "/")
}

func originScheme(httpScheme string) string {
	if httpScheme == "https" {
		return "https"
	}
	return "http"
}

// stripDefaultPort drops :80 from http and :443 from https hosts (ws and
// wss alike), so that "example.com" and "example.com:80" compare equal.
func stripDefaultPort(host, scheme string) string {
	switch scheme {
	case "http", "ws":
		return strings.TrimSuffix(host, ":80")
	case "https", "wss":
		return strings.TrimSuffix(host, ":443")
	}
	return host
}

// sendError answers with the error shape shared by every modsrv endpoint.
func sendError(c *fiber.Ctx, status int, code, msg string) error {
	b, err := json.Marshal(map[string]map[string]string{"error": {"code": code, "message": msg}})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	return c.Status(status).Send(b)
}

// register adds a connected client.
func (h *Hub) register(c *client) {
	h.mu.Lock()
	h.clients[c] = struct{}{}
	h.mu.Unlock()
	h.accepted.Add(1)
}

// unregister removes a client and all its subscriptions.
func (h *Hub) unregister(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.clients, c)
	for m := range c.models {
		removeSub(h.models, m, c)
	}
	for ch := range c.channels {
		removeSub(h.channels, ch, c)
	}
	h.subs -= len(c.models) + len(c.channels)
	delete(h.alarms, c)
}

func addSub(index map[string]map[*client]struct{}, id string, c *client) {
	set := index[id]
	if set == nil {
		set = make(map[*client]struct{})
		index[id] = set
	}
	set[c] = struct{}{}
}

func removeSub(index map[string]map[*client]struct{}, id string, c *client) {
	set := index[id]
	delete(set, c)
	if len(set) == 0 {
		delete(index, id)
	}
}

// publish queues msg to every client in set; the caller holds h.mu (read).
func (h *Hub) publish(set map[*client]struct{}, msg []byte) {
	for c := range set {
		if c.enqueue(msg) {
			h.sent.Add(1)
		}
	}
}
