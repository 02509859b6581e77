package alerting

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"text/template"
	"time"

	"github.com/voltedge/voltedge/internal/conf"
	"github.com/voltedge/voltedge/internal/keys"
)

// Defaults of a Target.
const (
	DefaultMethod       = "POST"
	DefaultTimeout      = 15 * time.Second
	DefaultConcurrency  = 4
	DefaultJitter       = 0.10
	DefaultDisableAfter = 5 * 24 * time.Hour
	// MaxSecrets is how many secrets a target signs with at once: the
	// current one and, while receivers are being moved, the next.
	MaxSecrets = 2
	// MaxConcurrency bounds Target.Concurrency.
	MaxConcurrency = 64
	// MaxAttempts bounds the length of Target.Schedule.
	MaxAttempts = 32
)

// DefaultSchedule is when the attempts of a delivery are made, each entry
// the wait after the previous attempt (the first: after queueing): 8
// attempts over about 27.6 hours.
var defaultSchedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// DefaultSchedule returns a copy of the default retry schedule.
func DefaultSchedule() []time.Duration { return append([]time.Duration(nil), defaultSchedule...) }

// Target is a webhook receiver, kept as JSON in keys.WebhookTargets under
// its ID. Durations are written as Go duration strings ("15s", "10h").
type Target struct {
	ID  string `json:"id" toml:"id"`
	URL string `json:"url" toml:"url"`
	// Method is the HTTP method, POST by default.
	Method  string            `json:"method,omitempty" toml:"method"`
	Headers map[string]string `json:"headers,omitempty" toml:"headers"`
	// Secrets sign each request (Standard Webhooks): "whsec_" and the
	// base64 of 24 to 64 random bytes; at most two, both signatures are
	// sent, so that a receiver can move from one to the other. None: the
	// requests are not signed.
	Secrets []string `json:"secrets,omitempty" toml:"secrets"`
	// Timeout bounds one attempt, 15 s by default.
	Timeout conf.Duration `json:"timeout,omitempty" toml:"timeout"`
	// Concurrency is how many requests to the target may be under way at
	// once, 4 by default.
	Concurrency int `json:"concurrency,omitempty" toml:"concurrency"`
	// Schedule is the wait before each attempt (the first: after
	// queueing); its length is the number of attempts. DefaultSchedule
	// when empty.
	Schedule []conf.Duration `json:"schedule,omitempty" toml:"schedule"`
	// Jitter spreads each wait of Schedule by up to ± this fraction
	// (0.10 by default; a negative value means none).
	Jitter float64 `json:"jitter,omitempty" toml:"jitter"`
	// DisableAfter disables the target when it has failed, with no
	// success, for this long (5 days by default).
	DisableAfter conf.Duration `json:"disable_after,omitempty" toml:"disable_after"`
	// Enabled: a disabled target keeps its queue and receives nothing.
	Enabled bool `json:"enabled" toml:"enabled"`
	// DisabledReason says why alarmsrv disabled the target (410 Gone,
	// failing for too long); an operator clears it by enabling the target.
	DisabledReason string `json:"disabled_reason,omitempty" toml:"disabled_reason"`
	// Template, when set, is a Go text/template that renders the body
	// from the Event (the "json" function writes a value as JSON). Empty:
	// the body is the event's JSON.
	Template string `json:"template,omitempty" toml:"template"`
	// ContentType of the body, "application/json" by default.
	ContentType string `json:"content_type,omitempty" toml:"content_type"`
}

// WithDefaults returns a copy of t with every unset field at its default.
func (t Target) WithDefaults() Target {
	if t.Method == "" {
		t.Method = DefaultMethod
	}
	t.Method = strings.ToUpper(t.Method)
	if t.Timeout.Duration == 0 {
		t.Timeout.Duration = DefaultTimeout
	}
	if t.Concurrency == 0 {
		t.Concurrency = DefaultConcurrency
	}
	if len(t.Schedule) == 0 {
		for _, d := range defaultSchedule {
			t.Schedule = append(t.Schedule, conf.Duration{Duration: d})
		}
	}
	if t.Jitter == 0 {
		t.Jitter = DefaultJitter
	}
	if t.DisableAfter.Duration == 0 {
		t.DisableAfter.Duration = DefaultDisableAfter
	}
	if t.ContentType == "" {
		t.ContentType = "application/json"
	}
	return t
}

// Validate checks a target as it would be stored (defaults need not be
// filled in).
func (t Target) Validate() error {
	var errs []error
	if !keys.ValidID(t.ID) {
		errs = append(errs, fmt.Errorf("invalid target id %q", t.ID))
	}
	u, err := url.Parse(t.URL)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("url: %w", err))
	case u.Scheme != "http" && u.Scheme != "https":
		errs = append(errs, fmt.Errorf("url %q: only http and https", t.URL))
	case u.Host == "":
		errs = append(errs, fmt.Errorf("url %q: no host", t.URL))
	}
	switch strings.ToUpper(t.Method) {
	case "", "POST", "PUT", "PATCH", "GET", "DELETE":
	default:
		errs = append(errs, fmt.Errorf("method %q: POST, PUT, PATCH, GET or DELETE", t.Method))
	}
	for k, v := range t.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n\t") || strings.ContainsAny(v, "\r\n") {
			errs = append(errs, fmt.Errorf("invalid header %q", k))
		}
	}
	if len(t.Secrets) > MaxSecrets {
		errs = append(errs, fmt.Errorf("%d secrets: at most %d", len(t.Secrets), MaxSecrets))
	}
	for i, s := range t.Secrets {
		if _, err := secretKey(s); err != nil {
			errs = append(errs, fmt.Errorf("secret %d: %w", i+1, err))
		}
	}
	if t.Timeout.Duration < 0 || t.Timeout.Duration > 5*time.Minute {
		errs = append(errs, fmt.Errorf("timeout %v: between 0 and 5m", t.Timeout.Duration))
	}
	if t.Concurrency < 0 || t.Concurrency > MaxConcurrency {
		errs = append(errs, fmt.Errorf("concurrency %d: between 1 and %d", t.Concurrency, MaxConcurrency))
	}
	if len(t.Schedule) > MaxAttempts {
		errs = append(errs, fmt.Errorf("schedule of %d attempts: at most %d", len(t.Schedule), MaxAttempts))
	}
	for _, d := range t.Schedule {
		if d.Duration < 0 || d.Duration > 7*24*time.Hour {
			errs = append(errs, fmt.Errorf("schedule wait %v: between 0 and 7 days", d.Duration))
		}
	}
	if t.Jitter > 0.5 {
		errs = append(errs, fmt.Errorf("jitter %v: at most 0.5", t.Jitter))
	}
	if t.DisableAfter.Duration < 0 {
		errs = append(errs, fmt.Errorf("disable_after %v: negative", t.DisableAfter.Duration))
	}
	if t.Template != "" {
		if _, err := parseTemplate(t.Template); err != nil {
			errs = append(errs, fmt.Errorf("template: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Redacted returns a copy of t whose secrets are replaced by "whsec_****",
// for logs and for answers to clients.
func (t Target) Redacted() Target {
	if len(t.Secrets) > 0 {
		s := make([]string, len(t.Secrets))
		for i := range s {
			s[i] = RedactedSecret
		}
		t.Secrets = s
	}
	if len(t.Headers) > 0 {
		h := make(map[string]string, len(t.Headers))
		for k, v := range t.Headers {
			if sensitiveHeader(k) {
				v = "****"
			}
			h[k] = v
		}
		t.Headers = h
	}
	return t
}

// RedactedSecret stands for a secret in Target.Redacted.
const RedactedSecret = "whsec_****"

// sensitiveHeader: headers whose values are credentials.
func sensitiveHeader(k string) bool {
	k = strings.ToLower(k)
	return k == "authorization" || k == "proxy-authorization" || k == "cookie" ||
		strings.Contains(k, "token") || strings.Contains(k, "secret") || strings.Contains(k, "key")
}

// LogValue logs the target without its secrets.
func (t Target) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", t.ID), slog.String("url", t.URL), slog.Bool("enabled", t.Enabled))
}

// ScheduleDurations returns the retry schedule (the default when unset).
func (t Target) ScheduleDurations() []time.Duration {
	if len(t.Schedule) == 0 {
		return DefaultSchedule()
	}
	out := make([]time.Duration, len(t.Schedule))
	for i, d := range t.Schedule {
		out[i] = d.Duration
	}
	return out
}

// ParseTarget decodes a target as stored in keys.WebhookTargets.
func ParseTarget(id string, raw []byte) (Target, error) {
	var t Target
	if err := json.Unmarshal(raw, &t); err != nil {
		return Target{}, fmt.Errorf("target %s: %w", id, err)
	}
	if t.ID == "" {
		t.ID = id
	}
	if t.ID != id {
		return Target{}, fmt.Errorf("target %s: stored with id %q", id, t.ID)
	}
	if err := t.Validate(); err != nil {
		return Target{}, fmt.Errorf("target %s: %w", id, err)
	}
	return t, nil
}

// Render makes the request body for ev: the event's JSON, or the
// target's template executed on it.
func (t Target) Render(ev Event) ([]byte, error) {
	if t.Template == "" {
		b, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("event %s as JSON: %w", ev.ID, err)
		}
		return b, nil
	}
	tm, err := parseTemplate(t.Template)
	if err != nil {
		return nil, fmt.Errorf("target %s template: %w", t.ID, err)
	}
	var b bytes.Buffer
	if err := tm.Execute(&b, ev); err != nil {
		return nil, fmt.Errorf("target %s template on event %s: %w", t.ID, ev.ID, err)
	}
	return b.Bytes(), nil
}

func parseTemplate(s string) (*template.Template, error) {
	return template.New("body").Option("missingkey=zero").Funcs(template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
	}).Parse(s)
}

// secretKey decodes a "whsec_…" secret into its HMAC key.
func secretKey(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("a secret starts with %q", SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("a secret is %q and base64: %w", SecretPrefix, err)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("a secret holds %d bytes: 24 to 64", len(key))
	}
	return key, nil
}
