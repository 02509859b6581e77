package alerting

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// verify is a receiver's check of a Standard Webhooks request, written
// from the specification and not from Sign: the secret is the base64
// after "whsec_"; the signed content is "{webhook-id}.{webhook-timestamp}.
// {body}"; webhook-signature holds space-separated "v1,<base64 HMAC-SHA256>"
// and one match suffices; a timestamp more than 5 minutes away is refused.
func verify(secret string, h http.Header, body []byte, now time.Time) error {
	id, tsText, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || tsText == "" || sigs == "" {
		return errors.New("missing headers")
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("timestamp too old or too new")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + tsText + "." + string(body)))
	want := mac.Sum(nil)
	for _, s := range strings.Split(sigs, " ") {
		version, b64, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no signature matches")
}

// TestSignKnownVector checks Sign against the example of the Standard
// Webhooks reference libraries.
func TestSignKnownVector(t *testing.T) {
	sig, err := Sign([]string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "msg_p5jXN8AQM9LWM0D4loKWxJek",
		time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; sig != want {
		t.Fatalf("Sign = %q, want %q", sig, want)
	}
}

// TestSendVerified: a receiver verifying with either of two secrets (a
// rotation) accepts the request; a wrong secret, a changed body and an old
// timestamp are refused.
func TestSendVerified(t *testing.T) {
	s1, _ := GenerateSecret()
	s2, _ := GenerateSecret()
	other, _ := GenerateSecret()
	type got struct {
		h    http.Header
		body []byte
	}
	ch := make(chan got, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- got{r.Header.Clone(), b}
		w.Header().Set("X-Seen", "yes")
		w.WriteHeader(202)
		_, _ = w.Write([]byte(strings.Repeat("a", 5000)))
	}))
	defer srv.Close()
	tg := Target{ID: "t", URL: srv.URL + "/hook", Secrets: []string{s1, s2}, Headers: map[string]string{"X-Site": "north"}, Enabled: true}
	if err := tg.Validate(); err != nil {
		t.Fatal(err)
	}
	res := Send(context.Background(), NewHTTPClient(), tg, Message{ID: "d1", Body: []byte(`{"a":1}`)})
	if !res.OK() || res.Status != 202 || res.Header.Get("X-Seen") != "yes" || len(res.BodyPrefix) != BodyPrefixMax {
		t.Fatalf("result %+v", res)
	}
	g := <-ch
	if g.h.Get("User-Agent") != UserAgent || g.h.Get("X-Site") != "north" || g.h.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", g.h)
	}
	now := time.Now()
	for _, s := range []string{s1, s2} {
		if err := verify(s, g.h, g.body, now); err != nil {
			t.Errorf("verify with a current secret: %v", err)
		}
	}
	if verify(other, g.h, g.body, now) == nil {
		t.Error("a wrong secret verifies")
	}
	if verify(s1, g.h, []byte(`{"a":2}`), now) == nil {
		t.Error("a changed body verifies")
	}
	if verify(s1, g.h, g.body, now.Add(6*time.Minute)) == nil {
		t.Error("a 6-minute-old timestamp verifies")
	}
}

// TestSendAnswers: redirects are not followed, Retry-After is read on 429
// and 503, a timeout and a refused connection give no status.
func TestSendAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "http://example.invalid/", http.StatusFound)
		case "/429":
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(429)
		case "/503":
			w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(503)
		case "/slow":
			time.Sleep(2 * time.Second)
		}
	}))
	defer srv.Close()
	c := NewHTTPClient()
	send := func(path string, timeout time.Duration) Result {
		tg := Target{ID: "t", URL: srv.URL + path, Enabled: true}
		tg.Timeout.Duration = timeout
		return Send(context.Background(), c, tg, Message{ID: "x", Body: []byte("{}")})
	}
	if r := send("/redirect", 0); r.Status != 302 || r.OK() {
		t.Errorf("redirect: %+v", r)
	}
	if r := send("/429", 0); r.Status != 429 || r.RetryAfter != 7*time.Second {
		t.Errorf("429: %+v", r)
	}
	if r := send("/503", 0); r.Status != 503 || r.RetryAfter < 80*time.Second || r.RetryAfter > 91*time.Second {
		t.Errorf("503: %+v", r)
	}
	if r := send("/slow", 200*time.Millisecond); r.Status != 0 || r.Err == nil || r.Duration > time.Second {
		t.Errorf("timeout: %+v", r)
	}
	tg := Target{ID: "t", URL: "http://127.0.0.1:1/", Enabled: true}
	if r := Send(context.Background(), c, tg, Message{ID: "x"}); r.Err == nil || r.Status != 0 {
		t.Errorf("refused: %+v", r)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Now()
	for in, want := range map[string]time.Duration{"": 0, "x": 0, "-3": 0, "0": 0, "12": 12 * time.Second, "999999": 24 * time.Hour} {
		if got := ParseRetryAfter(in, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}
