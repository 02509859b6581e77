// Package api is modsrv's REST API over the VoltEdge keys in Redis: health,
// models and their values, controls, channels with their points, frames
// and events, alarms with acknowledgement and shelving, alarmsrv's rules,
// webhook targets and dead letters, the device registry, and the
// OpenAPI document and metrics that describe and measure it.
//
// New builds the fiber application with the API's error handler and
// middleware; the WebSocket and the console mount their routes on the same
// application. Every error is answered as
//
//	{"error":{"code":"not_found","message":"model \"x\" has no values"}}
//
// with the codes of StatusCode. Every key comes from internal/keys, and
// every string that came from a device is returned JSON-escaped.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/lualib"
	"github.com/voltedge/voltedge/internal/metrics"
	"github.com/voltedge/voltedge/internal/svc"
	"github.com/voltedge/voltedge/modsrv/auth"
	"github.com/voltedge/voltedge/modsrv/config"
	"github.com/voltedge/voltedge/modsrv/links"
)

// Limits of the HTTP server.
const (
	// BodyLimit bounds a request body.
	BodyLimit = 64 << 10
	// ReadBufferSize bounds a request's headers, and is what each
	// connection holds to read them.
	ReadBufferSize = 4096
	// redisTimeout bounds the Redis work of one request (controls excepted).
	redisTimeout = 5 * time.Second
	// maxRouteSeries bounds the label sets of the request counter.
	maxRouteSeries = 500
)

// Deps is what the API (and the WebSocket and console mounted beside it) needs.
type Deps struct {
	// Redis is the service's client.
	Redis rueidis.Client
	// Auth checks credentials and keeps the sessions.
	Auth *auth.Auth
	// Log receives request errors; nil means slog.Default().
	Log *slog.Logger
	// Metrics is the registry /metrics serves; nil means a new one.
	Metrics *metrics.Registry
	// Config is modsrv.toml.
	Config *config.Config
	// Caller calls the Lua library; nil means one made on Redis.
	Caller *lualib.Caller
	// Results hands controls their outcomes; the caller runs it (Run) for
	// as long as the API serves. Required.
	Results *contract.Results
	// Started is when the service started (uptime); zero means now.
	Started time.Time
	// Links is the model–channel link index; nil means one made on Redis
	// (read on demand). Share one per process and run it (Run).
	Links *links.Index
}

// withDefaults fills in the optional fields and checks the required ones.
func (d Deps) withDefaults() (Deps, error) {
	if d.Redis == nil || d.Auth == nil || d.Config == nil || d.Results == nil {
		return d, errors.New("api: Deps needs Redis, Auth, Config and Results")
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Caller == nil {
		d.Caller = lualib.NewCaller(d.Redis, d.Log)
	}
	if d.Links == nil {
		d.Links = links.New(d.Redis, 0, d.Log)
	}
	if d.Started.IsZero() {
		d.Started = time.Now()
	}
	if d.Metrics == nil {
		d.Metrics = svc.BaseMetrics("modsrv", d.Redis, d.Started)
	}
	return d, nil
}

// server holds the handlers' state.
type server struct {
	d        Deps
	sender   *contract.Sender
	links    *links.Index
	doc      []byte // the OpenAPI document
	requests *metrics.CounterVec
	controls *metrics.CounterVec
	logins   *metrics.CounterVec
	// http sends POST /webhooks/test.
	http *http.Client
	// hist is the history store; nil when [history] mysql_dsn is empty.
	hist *historyStore
	// confirmedRun is the last Redis run id whose configuration comsrv
	// confirmed (see configState); nil until one is seen.
	confirmedRun atomic.Pointer[string]
}

// New returns the fiber application with the API mounted: the error
// handler that renders every error in the API's shape, request metrics,
// the auth middleware (so that auth.Check works in every handler) and the
// routes of Routes. It registers the API's metrics on d.Metrics (and the
// Go runtime's), so one registry serves one application.
func New(d Deps) (*fiber.App, error) {
	d, err := d.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &server{d: d, sender: contract.NewSender(d.Redis, d.Caller, d.Results), links: d.Links, http: alerting.NewHTTPClient()}
	h := d.Config.History
	s.hist = newHistoryStore(h.MySQLDSN, or(h.Site, config.DefaultSite()), d.Log)
	reg := d.Metrics
	s.requests = reg.CounterVec("modsrv_http_requests_total", "HTTP requests by route, method and status.",
		[]string{"route", "method", "status"}, maxRouteSeries)
	s.controls = reg.CounterVec("modsrv_controls_total", "Control requests by outcome (a command status, wait_timeout or refused).",
		[]string{"status"}, 32)
	s.logins = reg.CounterVec("modsrv_logins_total", "Login attempts by result.", []string{"result"}, 8)
	reg.GaugeFunc("modsrv_sessions", "Login sessions kept.", func() float64 { return float64(d.Auth.Sessions()) })

	app := fiber.New(fiber.Config{
		AppName:               "modsrv",
		DisableStartupMessage: true,
		ErrorHandler:          s.errorHandler,
		BodyLimit:             BodyLimit,
		// Path parameters are unescaped by pathParam, after routing: an
		// escaped '/' (%2F) stays inside its segment and is refused as part
		// of an id instead of changing the route.
		UnescapePath: false,
		// A request, headers included, must arrive within the read timeout:
		// a client that sends a partial request is dropped after it. The
		// connections are bounded in all and per remote address (WebSocket
		// clients included), and an idle connection gives back its buffers.
		ReadTimeout:       or(d.Config.HTTPReadTimeout.Duration, config.DefaultHTTPReadTimeout),
		IdleTimeout:       or(d.Config.HTTPIdleTimeout.Duration, config.DefaultHTTPIdleTimeout),
		Concurrency:       or(d.Config.HTTPMaxConns, config.DefaultHTTPMaxConns),
		ReadBufferSize:    ReadBufferSize,
		WriteBufferSize:   ReadBufferSize,
		ReduceMemoryUsage: true,
	})
	app.Hooks().OnShutdown(s.hist.Close)
	rs := s.routes()
	if s.doc, err = json.Marshal(openAPI(rs)); err != nil {
		return nil, fmt.Errorf("api: openapi document: %w", err)
	}
	// A panic in a handler answers 500 and is logged; it never stops modsrv.
	app.Use(recover.New(recover.Config{EnableStackTrace: true, StackTraceHandler: func(c *fiber.Ctx, e any) {
		d.Log.Error("handler panic", "path", c.Path(), "panic", fmt.Sprint(e))
	}}))
	app.Use(s.observe, headers, hostCheck(d.Config.Hostnames), d.Auth.Middleware())
	for _, r := range rs {
		h := []fiber.Handler{}
		switch r.access {
		case accessRead:
			h = append(h, d.Auth.RequireRead())
		case accessWrite:
			h = append(h, d.Auth.RequireWrite())
		}
		h = append(h, r.handler)
		if r.method == fiber.MethodGet {
			app.Get(r.path, h...) // and HEAD
			continue
		}
		app.Add(r.method, r.path, h...)
	}
	return app, nil
}

// or returns v, or def when v is zero (a Config not made by config.Load).
func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// headers sets the headers every answer carries.
func headers(c *fiber.Ctx) error {
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	return c.Next()
}

// hostCheck refuses requests whose Host is not an IP address, localhost or
// one of names (when names is not empty): a rebinding DNS name of a foreign
// web page never matches.
func hostCheck(names []string) fiber.Handler {
	if len(names) == 0 {
		return func(c *fiber.Ctx) error { return c.Next() }
	}
	allowed := map[string]bool{"localhost": true}
	for _, n := range names {
		allowed[strings.ToLower(n)] = true
	}
	return func(c *fiber.Ctx) error {
		host := string(c.Request().Host())
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.ToLower(strings.Trim(host, "[]"))
		if allowed[host] || net.ParseIP(host) != nil {
			return c.Next()
		}
		return Errorf(http.StatusForbidden, "host %q is not one of this box's names (hostnames in modsrv.toml)", clip(host))
	}
}

// clip bounds a client-supplied string for a message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// observe counts requests by route pattern, method and status. Errors are
// rendered here (through the application's error handler), so that the
// status is known.
func (s *server) observe(c *fiber.Ctx) error {
	own := c.Route()
	if err := c.Next(); err != nil {
		if herr := c.App().ErrorHandler(c, err); herr != nil {
			s.d.Log.Error("error handler", "path", c.Path(), "err", herr)
			c.Status(http.StatusInternalServerError)
		}
	}
	route := "unmatched"
	if r := c.Route(); r != own {
		route = r.Path
	}
	s.requests.With(route, c.Method(), statusText(c.Response().StatusCode())).Inc()
	return nil
}

// statusText formats common status codes without allocating.
func statusText(code int) string {
	switch code {
	case 101:
		return "101"
	case 200:
		return "200"
	case 201:
		return "201"
	case 304:
		return "304"
	case 400:
		return "400"
	case 401:
		return "401"
	case 404:
		return "404"
	case 429:
		return "429"
	case 500:
		return "500"
	case 502:
		return "502"
	case 503:
		return "503"
	case 504:
		return "504"
	}
	return fmt.Sprint(code)
}

// reqCtxFor is the context of a request's longer Redis work.
func reqCtxFor(c *fiber.Ctx, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.UserContext(), d)
}

// reqCtx is the context of a request's Redis work.
func reqCtx(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.UserContext(), redisTimeout)
}
