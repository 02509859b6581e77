package auth

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/crypto/bcrypt"
)

const secret = "0123456789abcdef-scada-0123456789"

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func newAuth(t *testing.T, o Options) *Auth {
	t.Helper()
	if o.Tokens == nil {
		o.Tokens = []Token{{Name: "scada", Secret: secret}, {Name: "mes", Secret: "another-token-of-at-least-32-chars"}}
	}
	if o.Users == nil {
		o.Users = []User{{Name: "op", Hash: hash(t, "pw")}}
	}
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// app mounts a's handlers the way modsrv does, with an error handler that
// writes the status and message.
func app(a *Auth) *fiber.App {
	f := fiber.New(fiber.Config{ErrorHandler: func(c *fiber.Ctx, err error) error {
		code := fiber.StatusInternalServerError
		var fe *fiber.Error
		if errors.As(err, &fe) {
			code = fe.Code
		}
		return c.Status(code).JSON(fiber.Map{"error": err.Error()})
	}})
	f.Use(a.Middleware())
	f.Post("/login", a.Login)
	f.Post("/logout", a.Logout)
	f.Get("/me", a.Me)
	f.Get("/read", a.RequireRead(), func(c *fiber.Ctx) error { return c.SendString("read by " + UserOf(c)) })
	f.Post("/write", a.RequireWrite(), func(c *fiber.Ctx) error { return c.SendString("written by " + UserOf(c)) })
	f.Get("/check", func(c *fiber.Ctx) error {
		who, ok := Check(c)
		if !ok {
			return c.SendString("nobody")
		}
		return c.SendString(who)
	})
	return f
}

type reply struct {
	code int
	body string
	resp *http.Response
}

func do(t *testing.T, f *fiber.App, method, path, body string, hdr ...string) reply {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.Test(req, 10000)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, string(b), resp}
}

func TestTokens(t *testing.T) {
	a := newAuth(t, Options{LoginRate: 10})
	f := app(a)
	if r := do(t, f, "POST", "/write", "", "Authorization", "Bearer "+secret); r.code != 200 || r.body != "written by scada" {
		t.Fatalf("good token: %+v", r)
	}
	if r := do(t, f, "POST", "/write", "", "Authorization", "bearer  another-token-of-at-least-32-chars "); r.code != 200 || r.body != "written by mes" {
		t.Fatalf("second token, lower-case scheme: %+v", r)
	}
	for _, h := range []string{"Bearer " + secret + "x", "Bearer", "Basic " + secret, secret, "Bearer " + strings.Repeat("a", 2000)} {
		r := do(t, f, "POST", "/write", "", "Authorization", h)
		if r.code != 401 || !strings.Contains(r.body, "invalid or expired credentials") || r.resp.Header.Get("WWW-Authenticate") == "" {
			t.Fatalf("%q: %+v", h, r)
		}
	}
	if r := do(t, f, "POST", "/write", ""); r.code != 401 || !strings.Contains(r.body, "credentials required") {
		t.Fatalf("no credentials: %+v", r)
	}
	if r := do(t, f, "GET", "/check", "", "Authorization", "Bearer "+secret); r.body != "scada" {
		t.Fatalf("package Check: %+v", r)
	}
	if _, err := New(Options{Tokens: []Token{{Name: "x"}}}); err == nil {
		t.Fatal("empty secret accepted")
	}
	if _, err := New(Options{Users: []User{{Name: "x", Hash: "nope"}}}); err == nil {
		t.Fatal("bad hash accepted")
	}
}

func TestReadOpen(t *testing.T) {
	open := app(newAuth(t, Options{ReadOpen: true}))
	if r := do(t, open, "GET", "/read", ""); r.code != 200 || r.body != "read by " {
		t.Fatalf("open read: %+v", r)
	}
	if r := do(t, open, "GET", "/read", "", "Authorization", "Bearer "+secret); r.code != 200 || r.body != "read by scada" {
		t.Fatalf("open read with token: %+v", r)
	}
	if r := do(t, open, "POST", "/write", ""); r.code != 401 {
		t.Fatalf("open write: %+v", r)
	}
	closed := app(newAuth(t, Options{ReadOpen: false}))
	if r := do(t, closed, "GET", "/read", ""); r.code != 401 {
		t.Fatalf("closed read: %+v", r)
	}
	if r := do(t, closed, "GET", "/read", "", "Authorization", "Bearer "+secret); r.code != 200 {
		t.Fatalf("closed read with token: %+v", r)
	}
}

func sessionCookie(t *testing.T, r reply) *http.Cookie {
	t.Helper()
	for _, c := range r.resp.Cookies() {
		if c.Name == CookieName {
			return c
		}
	}
	t.Fatalf("no session cookie in %v", r.resp.Header)
	return nil
}

func TestLoginSession(t *testing.T) {
	a := newAuth(t, Options{})
	f := app(a)
	r := do(t, f, "POST", "/login", `{"user":"op","password":"pw"}`)
	if r.code != 200 {
		t.Fatalf("login: %+v", r)
	}
	var body struct {
		User      string `json:"user"`
		ExpiresAt int64  `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || body.User != "op" || body.ExpiresAt <= time.Now().UnixMilli() {
		t.Fatalf("login body %q: %v", r.body, err)
	}
	ck := sessionCookie(t, r)
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || len(ck.Value) != 43 || ck.Secure {
		t.Fatalf("cookie %+v", ck)
	}
	cookie := CookieName + "=" + ck.Value
	if r := do(t, f, "POST", "/write", "", "Cookie", cookie); r.code != 200 || r.body != "written by op" {
		t.Fatalf("write with session: %+v", r)
	}
	// The cookie alone does not authorise a write from another page, even of the same site.
	for _, hdr := range [][2]string{{"Origin", "http://127.0.0.1:9999"}, {"Sec-Fetch-Site", "same-site"}, {"Sec-Fetch-Site", "cross-site"}} {
		if r := do(t, f, "POST", "/write", "", "Cookie", cookie, hdr[0], hdr[1]); r.code != 403 {
			t.Fatalf("cookie write with %s: %s: %+v", hdr[0], hdr[1], r)
		}
	}
	if r := do(t, f, "POST", "/write", "", "Cookie", cookie, "Sec-Fetch-Site", "same-origin"); r.code != 200 {
		t.Fatalf("cookie write from the console: %+v", r)
	}
	if r := do(t, f, "GET", "/me", "", "Cookie", cookie); r.code != 200 || r.body != `{"read_open":false,"user":"op"}` {
		t.Fatalf("me: %+v", r)
	}
	if r := do(t, f, "GET", "/me", ""); r.code != 401 {
		t.Fatalf("me without session: %+v", r)
	}
	// A bearer header decides alone, even next to a valid cookie.
	if r := do(t, f, "POST", "/write", "", "Cookie", cookie, "Authorization", "Bearer wrong-wrong-wrong-wrong"); r.code != 401 {
		t.Fatalf("bad bearer with good cookie: %+v", r)
	}
	if !a.StillValid("", "other=1; "+cookie) || a.StillValid("Bearer wrong-wrong-wrong-wrong", cookie) {
		t.Fatal("StillValid before logout")
	}
	r = do(t, f, "POST", "/logout", "", "Cookie", cookie)
	if r.code != 200 || sessionCookie(t, r).Value != "" {
		t.Fatalf("logout: %+v", r)
	}
	if a.StillValid("", cookie) {
		t.Fatal("a session still valid after logout: a WebSocket opened with it could still send commands")
	}
	if r := do(t, f, "POST", "/write", "", "Cookie", cookie); r.code != 401 {
		t.Fatalf("write after logout: %+v", r)
	}
	if a.Sessions() != 0 {
		t.Fatalf("%d sessions after logout", a.Sessions())
	}
	if r := do(t, f, "POST", "/write", "", "Cookie", CookieName+"=forged"); r.code != 401 {
		t.Fatalf("forged cookie: %+v", r)
	}
}

func TestLoginFailures(t *testing.T) {
	f := app(newAuth(t, Options{LoginRate: 100}))
	for _, tc := range []struct {
		body string
		code int
	}{
		{`{"user":"op","password":"wrong"}`, 401},
		{`{"user":"nobody","password":"pw"}`, 401},
		{`{"user":"","password":"pw"}`, 400},
		{`not json`, 400},
		{`{"user":"op","password":"` + strings.Repeat("x", 300) + `"}`, 400},
	} {
		r := do(t, f, "POST", "/login", tc.body)
		if r.code != tc.code || len(r.resp.Cookies()) != 0 {
			t.Errorf("%.40s: %+v", tc.body, r)
		}
	}
}

func TestLoginRateLimit(t *testing.T) {
	f := app(newAuth(t, Options{LoginRate: 3}))
	for i := range 3 {
		if r := do(t, f, "POST", "/login", `{"user":"op","password":"wrong"}`); r.code != 401 {
			t.Fatalf("attempt %d: %+v", i, r)
		}
	}
	r := do(t, f, "POST", "/login", `{"user":"op","password":"pw"}`)
	if r.code != 429 || r.resp.Header.Get("Retry-After") == "" {
		t.Fatalf("4th attempt: %+v", r)
	}
}

// TestTokenGuessesLimited: failed bearer tokens count against the login
// limit of the remote address; beyond it every token attempt from there,
// the right one included, and every login get 429 with Retry-After.
func TestTokenGuessesLimited(t *testing.T) {
	f := app(newAuth(t, Options{LoginRate: 3}))
	for i := range 3 {
		if r := do(t, f, "POST", "/write", "", "Authorization", "Bearer guess-"+strings.Repeat("x", 30)); r.code != 401 {
			t.Fatalf("guess %d: %+v", i, r)
		}
	}
	for _, path := range []string{"/write", "/me"} {
		method := "GET"
		if path == "/write" {
			method = "POST"
		}
		r := do(t, f, method, path, "", "Authorization", "Bearer "+secret)
		if r.code != 429 || r.resp.Header.Get("Retry-After") == "" || !strings.Contains(r.body, "too many failed attempts") {
			t.Fatalf("%s after the guesses: %+v", path, r)
		}
	}
	if r := do(t, f, "GET", "/check", "", "Authorization", "Bearer "+secret); r.body != "nobody" {
		t.Fatalf("package Check after the guesses: %+v", r)
	}
	if r := do(t, f, "POST", "/login", `{"user":"op","password":"pw"}`); r.code != 429 {
		t.Fatalf("login after the guesses: %+v", r)
	}
	// A request checked twice (middleware, then a handler) counts once.
	g := app(newAuth(t, Options{LoginRate: 2}))
	g.Get("/twice", func(c *fiber.Ctx) error {
		Check(c)
		Check(c)
		return c.SendString("ok")
	})
	do(t, g, "GET", "/twice", "", "Authorization", "Bearer wrong")
	if r := do(t, g, "POST", "/write", "", "Authorization", "Bearer "+secret); r.code != 200 {
		t.Fatalf("one failed request counted twice: %+v", r)
	}
}

// TestWeakTokensRefused: New refuses short and low-variety secrets.
func TestWeakTokensRefused(t *testing.T) {
	for _, s := range []string{"aaaaaaaaaaaaaaaa", strings.Repeat("ab", 20), "0123456789abcdef0123456789abcde"} {
		if _, err := New(Options{Tokens: []Token{{Name: "x", Secret: s}}}); err == nil {
			t.Errorf("%q accepted", s)
		}
		if err := CheckTokenStrength(s); err == nil {
			t.Errorf("CheckTokenStrength(%q) passed", s)
		}
	}
	if err := CheckTokenStrength(secret); err != nil {
		t.Fatal(err)
	}
}

// TestDemoPassword: hashes of the well-known demo passwords are recognised.
func TestDemoPassword(t *testing.T) {
	for _, pw := range []string{"demo", "admin", "password", "voltedge"} {
		if got, ok := DemoPassword(hash(t, pw)); !ok || got != pw {
			t.Errorf("%q: %q %v", pw, got, ok)
		}
	}
	if got, ok := DemoPassword(hash(t, "pw-nobody-guesses")); ok {
		t.Fatalf("a private password taken for %q", got)
	}
}

func TestLimiter(t *testing.T) {
	l := newLimiter(2, time.Minute, 3)
	t0 := time.Unix(1000, 0)
	if ok, _ := l.allow("a", t0); !ok {
		t.Fatal("1st")
	}
	if ok, _ := l.allow("a", t0); !ok {
		t.Fatal("2nd")
	}
	ok, wait := l.allow("a", t0.Add(20*time.Second))
	if ok || wait != 40*time.Second {
		t.Fatalf("3rd: %v %v", ok, wait)
	}
	if ok, _ := l.allow("a", t0.Add(time.Minute)); !ok {
		t.Fatal("next window")
	}
	l.allow("b", t0.Add(time.Minute))
	l.allow("c", t0.Add(time.Minute))
	// Full: a new address still gets its attempts (the oldest window gives
	// way), so a flood of addresses cannot lock everyone out; the map stays bounded.
	if ok, _ := l.allow("d", t0.Add(time.Minute)); !ok || len(l.m) != 3 {
		t.Fatalf("a new address when full: %v, %d kept", ok, len(l.m))
	}
	if ok, _ := l.allow("e", t0.Add(3*time.Minute)); !ok || len(l.m) != 1 {
		t.Fatalf("finished windows are forgotten when full: %v %d", ok, len(l.m))
	}
}

func TestSessionBoundAndExpiry(t *testing.T) {
	a := newAuth(t, Options{MaxSessions: 3, SessionTTL: time.Hour})
	now := time.Now()
	old, _, _ := a.newSession("u0", now.Add(-2*time.Hour)) // expired
	var ids []string
	for i := range 3 {
		id, _, err := a.newSession("u", now.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if a.Sessions() != 3 {
		t.Fatalf("%d sessions", a.Sessions())
	}
	if _, ok := a.session(old); ok {
		t.Fatal("expired session accepted")
	}
	if _, ok := a.session(ids[0]); !ok {
		t.Fatal("the expired session should have been swept first")
	}
	a.newSession("u", now.Add(10*time.Second))
	if _, ok := a.session(ids[0]); ok {
		t.Fatal("the oldest session should have been ended")
	}
	if _, ok := a.session(ids[2]); !ok || a.Sessions() != 3 {
		t.Fatalf("newer session lost, %d sessions", a.Sessions())
	}
	if _, ok := a.session(strings.Repeat("x", 200)); ok {
		t.Fatal("overlong id")
	}
}

func BenchmarkCheckToken(b *testing.B) {
	a, err := New(Options{Tokens: []Token{{Name: "a", Secret: secret}, {Name: "b", Secret: secret + "b"}}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := a.CheckToken(secret); !ok {
			b.Fatal("no")
		}
	}
}
