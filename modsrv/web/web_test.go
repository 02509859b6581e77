package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
)

func app() *fiber.App {
	a := fiber.New(fiber.Config{DisableStartupMessage: true})
	Mount(a)
	return a
}

func get(t *testing.T, a *fiber.App, method, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.Host = "box.local:8002"
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := a.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestServesConsole(t *testing.T) {
	a := app()
	for _, c := range []struct{ path, ctype, contains string }{
		{"/", "text/html; charset=utf-8", `<script src="assets/app.js" defer></script>`},
		{"/assets/app.js", "text/javascript; charset=utf-8", "createTextNode"},
		{"/assets/app.css", "text/css; charset=utf-8", "font-variant-numeric"},
		{"/assets/i18n-en.js", "text/javascript; charset=utf-8", "'channels.title': 'Channels'"},
		{"/assets/i18n-zh-CN.js", "text/javascript; charset=utf-8", "'channels.title': '通道'"},
	} {
		resp, body := get(t, a, http.MethodGet, c.path, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.ctype || !strings.Contains(body, c.contains) {
			t.Fatalf("GET %s: %d %q, body without %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.contains)
		}
		policy := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(policy, "script-src 'self';") || strings.Contains(policy, "unsafe") ||
			!strings.Contains(policy, "connect-src 'self' ws://box.local:8002 wss://box.local:8002;") {
			t.Fatalf("GET %s: CSP %q", c.path, policy)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Fatalf("GET %s: headers %v", c.path, resp.Header)
		}
		etag := resp.Header.Get("ETag")
		if resp, _ := get(t, a, http.MethodGet, c.path, map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified {
			t.Fatalf("GET %s with its ETag: %d", c.path, resp.StatusCode)
		}
		if resp, body := get(t, a, http.MethodHead, c.path, nil); resp.StatusCode != 200 || body != "" {
			t.Fatalf("HEAD %s: %d %q", c.path, resp.StatusCode, body)
		}
	}
	for _, p := range []string{"/assets/nope.js", "/assets/index.html", "/assets/..%2fweb.go"} {
		if resp, body := get(t, a, http.MethodGet, p, nil); resp.StatusCode != 404 || !strings.Contains(body, `"code":"not_found"`) {
			t.Fatalf("GET %s: %d %s", p, resp.StatusCode, body)
		}
	}
}

func TestCSPHost(t *testing.T) {
	for h, ok := range map[string]bool{
		"box.local:8002": true, "10.0.0.5": true, "[::1]:8002": true,
		"": false, "a b": false, "x; script-src *": false, "x'": false, strings.Repeat("a", 256): false,
	} {
		if validHost(h) != ok {
			t.Errorf("validHost(%q) = %v", h, !ok)
		}
		if !ok && strings.Contains(csp(h), "ws://") {
			t.Errorf("csp(%q) = %q", h, csp(h))
		}
	}
}

// TestNoHTMLSinks keeps the console's script free of the calls that parse
// strings as HTML or code: device strings go in through text nodes only.
func TestNoHTMLSinks(t *testing.T) {
	files, err := assets()
	if err != nil {
		t.Fatal(err)
	}
	js := string(files["app.js"].body)
	sink := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*['"]on|\.srcdoc`)
	if m := sink.FindString(js); m != "" {
		t.Fatalf("app.js uses %q", m)
	}
	html := string(files["index.html"].body)
	if regexp.MustCompile(`<script>|\son[a-z]+=|style=`).MatchString(html) {
		t.Fatal("index.html has inline script, handlers or styles (the CSP forbids them)")
	}
	if regexp.MustCompile(`https?://`).MatchString(js + html + string(files["app.css"].body)) {
		t.Fatal("the console refers to another server (it must work offline)")
	}
	total := 0
	for _, f := range files {
		total += len(f.body)
	}
	if total > 128<<10 {
		t.Fatalf("the console is %d bytes; keep it small", total)
	}
}

// langKeys reads the keys of one language file: lines "  'key': 'text',".
func langKeys(t *testing.T, files map[string]asset, name string) map[string]string {
	t.Helper()
	f, ok := files[name]
	if !ok {
		t.Fatalf("no %s", name)
	}
	out := make(map[string]string)
	for _, m := range regexp.MustCompile(`(?m)^\s*'([^']+)':\s*'((?:[^'\\]|\\.)*)',\s*$`).FindAllStringSubmatch(string(f.body), -1) {
		if _, dup := out[m[1]]; dup {
			t.Errorf("%s: key %q twice", name, m[1])
		}
		out[m[1]] = m[2]
	}
	if len(out) < 50 {
		t.Fatalf("%s: only %d keys read", name, len(out))
	}
	return out
}

// TestLanguages: English and Chinese have the same keys, every key the
// page and the script use exists, and each Chinese string differs from the
// English one unless it is a name or a unit-free label (CSV, ASCII, …).
func TestLanguages(t *testing.T) {
	files, err := assets()
	if err != nil {
		t.Fatal(err)
	}
	en := langKeys(t, files, "i18n-en.js")
	zh := langKeys(t, files, "i18n-zh-CN.js")
	for k := range en {
		if _, ok := zh[k]; !ok {
			t.Errorf("zh-CN lacks %q", k)
		}
	}
	for k := range zh {
		if _, ok := en[k]; !ok {
			t.Errorf("en lacks %q (zh-CN has it)", k)
		}
	}
	same := map[string]bool{"export.csv": true, "export.xlsx": true, "frames.ascii": true, "health.redis": true, "health.lua": true}
	for k, v := range en {
		if zh[k] == v && !same[k] {
			t.Errorf("zh-CN %q is the English text %q", k, v)
		}
	}
	// Every placeholder of a string is in its translation.
	ph := regexp.MustCompile(`\{\w+\}`)
	for k, v := range en {
		for _, p := range ph.FindAllString(v, -1) {
			if !strings.Contains(zh[k], p) {
				t.Errorf("zh-CN %q lacks %s", k, p)
			}
		}
	}

	html := string(files["index.html"].body)
	used := map[string]string{}
	for _, m := range regexp.MustCompile(`data-i18n(?:-placeholder|-title)?="([^"]+)"`).FindAllStringSubmatch(html, -1) {
		used[m[1]] = "index.html"
	}
	js := string(files["app.js"].body)
	for _, m := range regexp.MustCompile(`\bt\('([^']+)'`).FindAllStringSubmatch(js, -1) {
		used[m[1]] = "app.js"
	}
	// Keys passed around as values (setLive's): any literal 'ns.name' whose
	// namespace is one of the tables'.
	spaces := map[string]bool{}
	for k := range en {
		spaces[strings.SplitN(k, ".", 2)[0]] = true
	}
	for _, m := range regexp.MustCompile(`'([a-z]+)\.([A-Za-z]+)'`).FindAllStringSubmatch(js, -1) {
		if spaces[m[1]] {
			used[m[1]+"."+m[2]] = "app.js"
		}
	}
	if len(used) < 50 {
		t.Fatalf("only %d keys found in use", len(used))
	}
	for k, where := range used {
		if _, ok := en[k]; !ok {
			t.Errorf("%s uses %q, which the language files lack", where, k)
		}
	}
	// Every element of the page with text of its own is marked for translation.
	for _, m := range regexp.MustCompile(`<(th|button|h2|h3|p|span|label|option)\b([^>]*)>([^<]*[A-Za-z][^<]*)<`).FindAllStringSubmatch(html, -1) {
		if !strings.Contains(m[2], "data-i18n") && !strings.Contains(m[2], `id="lang-`) && m[3] != "VoltEdge" &&
			!strings.Contains(m[2], `id="live"`) && !strings.Contains(m[2], `id="frames-channel"`) && !strings.Contains(m[2], `id="chart-title"`) {
			t.Errorf("index.html: <%s%s>%s is not translated", m[1], m[2], m[3])
		}
	}
}
