package alerting

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every webhook secret.
const SecretPrefix = "whsec_"

// Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// UserAgent is sent with every webhook request.
const UserAgent = "VoltEdge-alarmsrv"

// Bounds of reading an answer.
const (
	// BodyPrefixMax is how much of an answer's body Result keeps.
	BodyPrefixMax = 1024
	// drainMax is how much of an answer is read at most, so that the
	// connection can be used again; the rest is dropped with it.
	drainMax = 64 << 10
	// maxRetryAfter bounds a Retry-After.
	maxRetryAfter = 24 * time.Hour
)

// GenerateSecret returns a new secret: "whsec_" and the base64 of 32
// random bytes.
func GenerateSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// Sign returns the webhook-signature header value for a message: one
// "v1,<base64 of HMAC-SHA256 of id.timestamp.body>" per secret, separated
// by spaces. No secret: "".
func Sign(secrets []string, id string, ts time.Time, body []byte) (string, error) {
	sigs := make([]string, 0, len(secrets))
	for i, s := range secrets {
		key, err := secretKey(s)
		if err != nil {
			return "", fmt.Errorf("secret %d: %w", i+1, err)
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id))
		m.Write([]byte{'.'})
		m.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
		m.Write([]byte{'.'})
		m.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	return strings.Join(sigs, " "), nil
}

// NewHTTPClient returns the client for webhook requests: no redirect is
// followed (a 3xx answer is a failure to be fixed in the target's URL),
// connections are kept per host, and each request is bounded by its
// context (Send sets the target's timeout).
func NewHTTPClient() *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   MaxConcurrency,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 0, // the request's context bounds it
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Result is the outcome of one attempt.
type Result struct {
	// Status is the HTTP status; 0 when no answer came (Err says why).
	Status int
	// Header is the answer's header.
	Header http.Header
	// BodyPrefix is the first BodyPrefixMax bytes of the answer's body.
	BodyPrefix []byte
	// RetryAfter is the answer's Retry-After (429 and 503), 0 when absent.
	RetryAfter time.Duration
	// Duration is how long the attempt took.
	Duration time.Duration
	// Err is why no answer came (connection refused, timeout, …), or why
	// the request could not be made.
	Err error
}

// OK reports a 2xx answer.
func (r Result) OK() bool { return r.Err == nil && r.Status >= 200 && r.Status < 300 }

// Message is one webhook request: the delivery id (webhook-id, the same on
// every attempt), when it is sent and its body.
type Message struct {
	ID   string
	TS   time.Time
	Body []byte
}

// Send makes one attempt to deliver m to t with client (NewHTTPClient), t
// with its defaults applied or not. It signs the request when t has
// secrets, bounds it by t's timeout, keeps the first BodyPrefixMax bytes
// of the answer and reads no more than 64 KiB of it.
func Send(ctx context.Context, client *http.Client, t Target, m Message) Result {
	t = t.WithDefaults()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, t.Timeout.Duration)
	defer cancel()
	res := send(ctx, client, t, m)
	res.Duration = time.Since(start)
	return res
}

func send(ctx context.Context, client *http.Client, t Target, m Message) Result {
	if m.TS.IsZero() {
		m.TS = time.Now()
	}
	var body io.Reader
	if t.Method != http.MethodGet {
		body = bytes.NewReader(m.Body)
	}
	req, err := http.NewRequestWithContext(ctx, t.Method, t.URL, body)
	if err != nil {
		return Result{Err: fmt.Errorf("request to %s: %w", t.ID, err)}
	}
	for k, v := range t.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("User-Agent", UserAgent)
	if body != nil {
		req.Header.Set("Content-Type", t.ContentType)
	}
	req.Header.Set(HeaderID, m.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(m.TS.Unix(), 10))
	if len(t.Secrets) > 0 {
		sig, err := Sign(t.Secrets, m.ID, m.TS, m.Body)
		if err != nil {
			return Result{Err: fmt.Errorf("signing for %s: %w", t.ID, err)}
		}
		req.Header.Set(HeaderSignature, sig)
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // *url.Error repeats the URL, which may hold credentials
		}
		return Result{Err: err}
	}
	defer resp.Body.Close()
	prefix := make([]byte, BodyPrefixMax)
	n, rerr := io.ReadFull(resp.Body, prefix)
	if rerr == nil {
		_, _ = io.CopyN(io.Discard, resp.Body, drainMax-BodyPrefixMax)
	}
	res := Result{Status: resp.StatusCode, Header: resp.Header, BodyPrefix: prefix[:n]}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		res.RetryAfter = ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return res
}

// ParseRetryAfter reads a Retry-After value, seconds or an HTTP date,
// bounded to 24 hours; 0 when absent or invalid.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		if s > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(s) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		d = at.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// SampleEvent is the event POST /webhooks/test sends: an alarm raised on
// a made-up point.
func SampleEvent(now time.Time) Event {
	return Event{
		ID:    "test/" + strconv.FormatInt(now.UnixMilli(), 10) + "-0",
		Type:  AlarmRaised,
		TS:    now.UnixMilli(),
		Model: "sample_model",
		Point: "sample_point",
		Value: "42",
		Level: "warning",
		Rule:  "test",
		Fields: map[string]string{
			"reason": "a test event sent by an operator",
		},
	}
}
