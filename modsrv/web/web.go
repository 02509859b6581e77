// Package web is modsrv's operator console: a page of plain HTML, CSS and
// JavaScript embedded in the binary (no CDN, no framework, no build step)
// that reads the REST API and the WebSocket of the same server.
//
// The page shows the channels with their names, templates, models, online
// state and counters; the points (names, units, types) and received
// packets of a channel; live model values with units and a chart of a
// point, live or over a stored range from the history database; alarms
// with their levels, acknowledgement, shelving and the stored alarm
// history; alarmsrv's rules (enable, create, edit, test, run log), webhook
// targets (counters, health, a test request) and dead letters (re-send);
// the connection history, paged into the stored events; export buttons;
// the list of controls with a form per row for a logged-in user;
// and the device registry with the registrations comsrv refused. Models
// and channels link to each other. Its strings are in one table per
// language (i18n-en.js, i18n-zh-CN.js), chosen from the browser's
// languages or the switch in the header. Every string that comes from a
// device or from Redis is inserted as text, never as HTML, and the
// Content-Security-Policy allows no inline script.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/gofiber/fiber/v2"
)

//go:embed static
var static embed.FS

// asset is one embedded file, ready to serve.
type asset struct {
	body  []byte
	ctype string
	etag  string
}

// assets loads the embedded files, keyed by their name under static/.
func assets() (map[string]asset, error) {
	out := make(map[string]asset)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[strings.TrimPrefix(p, "static/")] = asset{
			body:  b,
			ctype: contentType(p),
			etag:  `"` + hex.EncodeToString(sum[:8]) + `"`,
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: embedded console: %w", err)
	}
	return out, nil
}

func contentType(p string) string {
	switch path.Ext(p) {
	case ".html":
		return fiber.MIMETextHTMLCharsetUTF8
	case ".css":
		return "text/css; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".png":
		return "image/png"
	case ".svg":
		return "image/svg+xml"
	}
	return fiber.MIMEOctetStream
}

// Mount serves the console on r: the page at "/" and its files under
// "/assets/".
func Mount(r fiber.Router) {
	files, err := assets()
	index, ok := files["index.html"]
	if err == nil && !ok {
		err = fmt.Errorf("web: embedded console has no index.html")
	}
	if err != nil { // only a broken build gets here; the tests read every file
		r.Get("/", func(c *fiber.Ctx) error { return fiber.NewError(fiber.StatusInternalServerError, err.Error()) })
		return
	}
	r.Get("/", func(c *fiber.Ctx) error { return serve(c, index) })
	r.Get("/assets/:name", func(c *fiber.Ctx) error {
		name := c.Params("name")
		a, ok := files[name]
		if !ok || name == "index.html" {
			return notFound(c)
		}
		return serve(c, a)
	})
}

// serve answers with a, or 304 when the client has it.
func serve(c *fiber.Ctx, a asset) error {
	c.Set(fiber.HeaderContentSecurityPolicy, csp(string(c.Request().Host())))
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set(fiber.HeaderETag, a.etag)
	if c.Get(fiber.HeaderIfNoneMatch) == a.etag {
		return c.SendStatus(fiber.StatusNotModified)
	}
	c.Set(fiber.HeaderContentType, a.ctype)
	return c.Send(a.body)
}

// csp is the page's Content-Security-Policy: its own script and styles
// only, no inline code, requests and WebSocket to its own server.
func csp(host string) string {
	connect := "'self'"
	if validHost(host) {
		connect += " ws://" + host + " wss://" + host
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src " + connect + "; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

// validHost accepts the characters of a host[:port] (names, IPv4, [IPv6]),
// so that the Host header cannot add directives to the policy.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '-', c == ':', c == '[', c == ']', c == '_':
		default:
			return false
		}
	}
	return true
}

func notFound(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	return c.Status(fiber.StatusNotFound).SendString(`{"error":{"code":"not_found","message":"no such console file"}}`)
}
