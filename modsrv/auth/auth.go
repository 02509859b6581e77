// Package auth controls access to modsrv: bearer tokens for other systems,
// users with bcrypt password hashes who log in for a session cookie, a
// per-IP limit on logins and failed bearer tokens, and fiber middleware that
// lets reads through on a trusted LAN (read_open) while every write needs
// credentials.
//
// Failures are returned as *fiber.Error (401, 429); the application's error
// handler renders them in the API's error shape.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/crypto/bcrypt"
)

// CookieName is the session cookie set by POST /login.
const CookieName = "voltedge_session"

// Defaults of Options.
const (
	DefaultLoginRate   = 5
	DefaultSessionTTL  = 12 * time.Hour
	DefaultMaxSessions = 1000
	// LoginWindow is the period LoginRate counts attempts in.
	LoginWindow = time.Minute
	// maxLimitedIPs bounds the remote addresses the login limiter remembers.
	maxLimitedIPs = 10000
	// maxField bounds the user name and password of a login.
	maxField = 256
	// MinTokenLength is the shortest bearer token secret accepted.
	MinTokenLength = 32
	// MinTokenVariety is the fewest distinct characters a bearer token
	// secret must have ("aaaa…" or "abab…" are refused whatever their length).
	MinTokenVariety = 10
)

// DemoPasswords are passwords that demos, examples and guessers use first:
// a configured user with one of them is refused outside a demo (see
// DemoPassword).
var DemoPasswords = []string{"demo", "admin", "password", "voltedge", "changeme", "123456"}

// Locals keys set by the middleware.
const (
	localsAuth    = "voltedge.auth"
	localsUser    = "voltedge.user"
	localsChecked = "voltedge.checked"
)

// Token is a bearer token and the name its requests are made in.
type Token struct {
	Name   string
	Secret string
}

// User is a login name and the bcrypt hash of its password.
type User struct {
	Name string
	Hash string
}

// Options configure an Auth. Zero values take the defaults.
type Options struct {
	Tokens []Token
	Users  []User
	// ReadOpen lets reads through without credentials.
	ReadOpen bool
	// LoginRate is the number of login attempts per remote IP and minute;
	// failed bearer tokens count against the same limit.
	LoginRate int
	// SessionTTL is the lifetime of a session.
	SessionTTL time.Duration
	// MaxSessions bounds the sessions kept; the oldest goes first.
	MaxSessions int
}

// Auth checks credentials and keeps the sessions. It is safe for concurrent use.
type Auth struct {
	readOpen bool
	tokens   []hashedToken
	users    map[string][]byte
	dummy    []byte // hash compared for unknown users, so that they take as long
	ttl      time.Duration
	maxSess  int
	limiter  *limiter

	mu       sync.Mutex
	sessions map[string]*session
}

type hashedToken struct {
	name string
	sum  [sha256.Size]byte
}

type session struct {
	user    string
	created time.Time
	expires time.Time
}

// New makes an Auth from o; it fails on a weak token secret (see
// CheckTokenStrength) or an unreadable password hash.
func New(o Options) (*Auth, error) {
	if o.LoginRate <= 0 {
		o.LoginRate = DefaultLoginRate
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = DefaultMaxSessions
	}
	a := &Auth{
		readOpen: o.ReadOpen,
		users:    make(map[string][]byte, len(o.Users)),
		ttl:      o.SessionTTL,
		maxSess:  o.MaxSessions,
		limiter:  newLimiter(o.LoginRate, LoginWindow, maxLimitedIPs),
		sessions: make(map[string]*session),
	}
	for _, t := range o.Tokens {
		if err := CheckTokenStrength(t.Secret); err != nil {
			return nil, fmt.Errorf("token %q: %w", t.Name, err)
		}
		a.tokens = append(a.tokens, hashedToken{name: t.Name, sum: sha256.Sum256([]byte(t.Secret))})
	}
	cost := bcrypt.DefaultCost
	for i, u := range o.Users {
		c, err := bcrypt.Cost([]byte(u.Hash))
		if err != nil {
			return nil, fmt.Errorf("user %q: password hash: %w", u.Name, err)
		}
		if i == 0 || c > cost {
			cost = c // the dummy hash costs as much as the dearest real one
		}
		a.users[u.Name] = []byte(u.Hash)
	}
	var pw [16]byte
	_, _ = rand.Read(pw[:])
	dummy, err := bcrypt.GenerateFromPassword(pw[:], cost)
	if err != nil {
		return nil, fmt.Errorf("dummy password hash: %w", err)
	}
	a.dummy = dummy
	return a, nil
}

// ErrWeakToken is returned (wrapped) by CheckTokenStrength.
var ErrWeakToken = errors.New("weak bearer token")

// CheckTokenStrength refuses a bearer token secret shorter than
// MinTokenLength or with fewer than MinTokenVariety distinct characters.
func CheckTokenStrength(secret string) error {
	if len(secret) < MinTokenLength {
		return fmt.Errorf("%w: must be at least %d characters (e.g. from: openssl rand -hex 24)", ErrWeakToken, MinTokenLength)
	}
	distinct := map[rune]bool{}
	for _, r := range secret {
		distinct[r] = true
	}
	if len(distinct) < MinTokenVariety {
		return fmt.Errorf("%w: has only %d distinct characters, needs at least %d (e.g. from: openssl rand -hex 24)", ErrWeakToken, len(distinct), MinTokenVariety)
	}
	return nil
}

// DemoPassword reports which of DemoPasswords the bcrypt hash is of, if
// any. It costs one bcrypt comparison per demo password.
func DemoPassword(hash string) (string, bool) {
	for _, pw := range DemoPasswords {
		if bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil {
			return pw, true
		}
	}
	return "", false
}

// ReadOpen reports whether reads need no credentials.
func (a *Auth) ReadOpen() bool { return a.readOpen }

// CheckToken reports the name of the bearer token secret, comparing in
// constant time against every configured token.
func (a *Auth) CheckToken(secret string) (name string, ok bool) {
	if secret == "" || len(secret) > 1024 {
		return "", false
	}
	sum := sha256.Sum256([]byte(secret))
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], a.tokens[i].sum[:]) == 1 && !ok {
			name, ok = a.tokens[i].name, true
		}
	}
	return name, ok
}

// Check reports who made the request: the name of its bearer token
// ("Authorization: Bearer <token>") or the user of its session cookie. A
// request with an Authorization header is judged by the header alone.
//
// A failed Authorization header counts as an attempt against the login
// limit of the remote address; while that address is over the limit every
// Authorization header from it fails, the right one included (RequireRead,
// RequireWrite and Me then answer 429).
func (a *Auth) Check(c *fiber.Ctx) (who string, ok bool) {
	r := a.check(c)
	return r.who, r.ok
}

// checked is the outcome of checking one request's credentials. It is kept
// in the request's Locals, so that a request checked by the middleware and
// again by a handler counts one failure at most.
type checked struct {
	authorization string
	cookie        string
	who           string
	ok            bool
	// wait, when positive, says the address is over the limit for so long.
	wait time.Duration
}

func (a *Auth) check(c *fiber.Ctx) checked {
	h, cookie := c.Get(fiber.HeaderAuthorization), c.Cookies(CookieName)
	if r, ok := c.Locals(localsChecked).(*checked); ok && r.authorization == h && r.cookie == cookie {
		return *r
	}
	r := checked{authorization: h, cookie: cookie}
	switch {
	case h != "":
		now := time.Now()
		if limited, wait := a.limiter.limited(c.IP(), now); limited {
			r.wait = wait
			break
		}
		if scheme, secret, found := strings.Cut(h, " "); found && strings.EqualFold(scheme, "Bearer") {
			r.who, r.ok = a.CheckToken(strings.TrimSpace(secret))
		}
		if !r.ok {
			a.limiter.allow(c.IP(), now)
		}
	case cookie != "":
		r.who, r.ok = a.session(cookie)
	}
	c.Locals(localsChecked, &r)
	return r
}

// tooManyAttempts is the 429 answer to a request from an address over the limit.
func tooManyAttempts(c *fiber.Ctx, wait time.Duration, msg string) error {
	c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(wait.Round(time.Second)/time.Second)+1))
	return fiber.NewError(fiber.StatusTooManyRequests, msg)
}

// throttled is the 429 of a request whose credentials were not checked
// because its address made too many failed attempts.
func throttled(c *fiber.Ctx, wait time.Duration) error {
	return tooManyAttempts(c, wait, "too many failed attempts from this address; try again later")
}

// StillValid reports whether the credentials of an earlier request, its
// Authorization and Cookie headers, still hold (a session may have ended by
// logout, expiry or eviction since).
func (a *Auth) StillValid(authorization, cookie string) bool {
	if authorization != "" {
		scheme, secret, found := strings.Cut(authorization, " ")
		if !found || !strings.EqualFold(scheme, "Bearer") {
			return false
		}
		_, ok := a.CheckToken(strings.TrimSpace(secret))
		return ok
	}
	for _, part := range strings.Split(cookie, ";") {
		if name, v, ok := strings.Cut(strings.TrimSpace(part), "="); ok && name == CookieName {
			_, ok := a.session(v)
			return ok
		}
	}
	return false
}

// Check is (*Auth).Check for an application that runs the Middleware of an
// Auth (the modsrv API installs it for every route).
func Check(c *fiber.Ctx) (who string, ok bool) {
	a, _ := c.Locals(localsAuth).(*Auth)
	if a == nil {
		return "", false
	}
	return a.Check(c)
}

// UserOf returns who RequireRead or RequireWrite let the request through
// for: "" for an anonymous read.
func UserOf(c *fiber.Ctx) string {
	u, _ := c.Locals(localsUser).(string)
	return u
}

// Middleware makes a available to Check for every request.
func (a *Auth) Middleware() fiber.Handler {
	return func(c *fiber.Ctx) error {
		c.Locals(localsAuth, a)
		return c.Next()
	}
}

// RequireWrite lets a request through only with a valid token or session
// (401 otherwise, 429 while its address is over the limit of failed attempts).
func (a *Auth) RequireWrite() fiber.Handler {
	return func(c *fiber.Ctx) error {
		r := a.check(c)
		if r.wait > 0 {
			return throttled(c, r.wait)
		}
		who, ok := r.who, r.ok
		if !ok {
			return unauthorized(c)
		}
		// A write authorised by the cookie alone must come from a page of
		// this host: a form on another port of the same host is "same
		// site" to the browser and would carry the cookie.
		if c.Get(fiber.HeaderAuthorization) == "" && !sameOrigin(c) {
			return fiber.NewError(fiber.StatusForbidden, "a cookie-authorised write must come from this console (Origin or Sec-Fetch-Site)")
		}
		c.Locals(localsUser, who)
		return c.Next()
	}
}

// sameOrigin reports whether a browser request comes from a page of this
// origin: Sec-Fetch-Site "same-origin", or an Origin equal to this host.
// Requests without either header (not from a browser) pass.
func sameOrigin(c *fiber.Ctx) bool {
	if site := c.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" || site == "none"
	}
	origin := c.Get(fiber.HeaderOrigin)
	if origin == "" {
		return true
	}
	return origin == c.Protocol()+"://"+string(c.Request().Host())
}

// RequireRead lets every request through when reads are open, and
// otherwise only those with a valid token or session. A request with an
// Authorization header from an address over the limit of failed attempts
// gets 429 either way.
func (a *Auth) RequireRead() fiber.Handler {
	return func(c *fiber.Ctx) error {
		r := a.check(c)
		if r.wait > 0 {
			return throttled(c, r.wait)
		}
		who, ok := r.who, r.ok
		if ok {
			c.Locals(localsUser, who)
		} else if !a.readOpen {
			return unauthorized(c)
		}
		return c.Next()
	}
}

func unauthorized(c *fiber.Ctx) error {
	c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="voltedge"`)
	if c.Get(fiber.HeaderAuthorization) != "" || c.Cookies(CookieName) != "" {
		return fiber.NewError(fiber.StatusUnauthorized, "invalid or expired credentials")
	}
	return fiber.NewError(fiber.StatusUnauthorized, "credentials required: a bearer token or a session from POST /login")
}

// loginRequest is the body of POST /login.
type loginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// Login is the handler of POST /login {"user","password"}: it checks the
// password against the user's bcrypt hash and sets the session cookie
// (HttpOnly, SameSite=Strict, Secure over TLS). Attempts are limited per
// remote IP (429 with Retry-After beyond the rate).
func (a *Auth) Login(c *fiber.Ctx) error {
	if ok, wait := a.limiter.allow(c.IP(), time.Now()); !ok {
		return tooManyAttempts(c, wait, "too many login attempts; try again later")
	}
	var req loginRequest
	if err := json.Unmarshal(c.Body(), &req); err != nil {
		return fiber.NewError(fiber.StatusBadRequest, "body must be JSON {\"user\":…,\"password\":…}")
	}
	if req.User == "" || len(req.User) > maxField || len(req.Password) > maxField {
		return fiber.NewError(fiber.StatusBadRequest, "user must be 1..256 bytes and password at most 256 bytes")
	}
	hash, known := a.users[req.User]
	if !known {
		hash = a.dummy
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(req.Password)); err != nil || !known {
		return fiber.NewError(fiber.StatusUnauthorized, "wrong user or password")
	}
	id, s, err := a.newSession(req.User, time.Now())
	if err != nil {
		return err
	}
	c.Cookie(&fiber.Cookie{
		Name: CookieName, Value: id, Path: "/", Expires: s.expires,
		HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode, Secure: c.Protocol() == "https",
	})
	return c.JSON(fiber.Map{"user": s.user, "expires_at": s.expires.UnixMilli()})
}

// Logout is the handler of POST /logout: it ends the session of the cookie
// (if any) and clears the cookie.
func (a *Auth) Logout(c *fiber.Ctx) error {
	if v := c.Cookies(CookieName); v != "" {
		a.mu.Lock()
		delete(a.sessions, v)
		a.mu.Unlock()
	}
	c.Cookie(&fiber.Cookie{
		Name: CookieName, Value: "", Path: "/", Expires: time.Unix(0, 0), MaxAge: -1,
		HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode, Secure: c.Protocol() == "https",
	})
	return c.JSON(fiber.Map{"user": nil})
}

// Me is the handler of GET /me: {"user":…,"read_open":…}, 401, or 429
// while the address is over the limit of failed attempts.
func (a *Auth) Me(c *fiber.Ctx) error {
	r := a.check(c)
	if r.wait > 0 {
		return throttled(c, r.wait)
	}
	who, ok := r.who, r.ok
	if !ok {
		return unauthorized(c)
	}
	return c.JSON(fiber.Map{"user": who, "read_open": a.readOpen})
}

// Sessions returns the number of sessions kept (expired ones included
// until they are swept).
func (a *Auth) Sessions() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.sessions)
}

func (a *Auth) session(id string) (string, bool) {
	if len(id) > 128 {
		return "", false
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sessions[id]
	if !ok {
		return "", false
	}
	if !now.Before(s.expires) {
		delete(a.sessions, id)
		return "", false
	}
	return s.user, true
}

// errNoRandom is returned when the system has no randomness to offer.
var errNoRandom = errors.New("no random bytes for a session id")

func (a *Auth) newSession(user string, now time.Time) (string, *session, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, fmt.Errorf("%w: %w", errNoRandom, err)
	}
	id := base64.RawURLEncoding.EncodeToString(b[:])
	s := &session{user: user, created: now, expires: now.Add(a.ttl)}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.sessions) >= a.maxSess {
		for k, v := range a.sessions {
			if !now.Before(v.expires) {
				delete(a.sessions, k)
			}
		}
	}
	for len(a.sessions) >= a.maxSess {
		var oldest string
		var at time.Time
		for k, v := range a.sessions {
			if oldest == "" || v.created.Before(at) {
				oldest, at = k, v.created
			}
		}
		delete(a.sessions, oldest)
	}
	a.sessions[id] = s
	return id, s, nil
}

// limiter counts attempts per key in fixed windows, remembering at most
// max keys; when full (after forgetting finished windows) it refuses.
type limiter struct {
	per    int
	window time.Duration
	max    int

	mu sync.Mutex
	m  map[string]*bucket
}

type bucket struct {
	start time.Time
	n     int
}

func newLimiter(per int, window time.Duration, maxKeys int) *limiter {
	return &limiter{per: per, window: window, max: maxKeys, m: make(map[string]*bucket)}
}

// limited reports, without counting an attempt, whether key has used up its
// attempts of the current window, and how long until the window ends.
func (l *limiter) limited(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.m[key]
	if !ok || now.Sub(b.start) >= l.window || b.n < l.per {
		return false, 0
	}
	return true, b.start.Add(l.window).Sub(now)
}

// allow counts one attempt of key at now; when refused it says how long
// until the window ends.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.m[key]
	if ok && now.Sub(b.start) >= l.window {
		b.start, b.n = now, 0
	}
	if !ok {
		if len(l.m) >= l.max {
			for k, v := range l.m {
				if now.Sub(v.start) >= l.window {
					delete(l.m, k)
				}
			}
			if len(l.m) >= l.max {
				// Still full: the oldest window gives way, so that a flood of
				// addresses cannot lock everyone else out.
				var oldest string
				var at time.Time
				for k, v := range l.m {
					if oldest == "" || v.start.Before(at) {
						oldest, at = k, v.start
					}
				}
				delete(l.m, oldest)
			}
		}
		b = &bucket{start: now}
		l.m[key] = b
	}
	if b.n >= l.per {
		return false, b.start.Add(l.window).Sub(now)
	}
	b.n++
	return true, 0
}
