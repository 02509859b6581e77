package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The Standard Webhooks specification's example: secret, id, timestamp,
// body and the signature it gives.
func TestVerifySpecExample(t *testing.T) {
	key, err := decodeSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"test": 2432232314}`)
	now := time.Unix(1614265330, 0)
	sig := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	if err := verify(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "v1,bad "+sig, body, now); err != nil {
		t.Fatalf("the specification's example: %v", err)
	}
	if verify(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", sig, []byte(`{"test": 2432232315}`), now) == nil {
		t.Fatal("a changed body verified")
	}
	if verify(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", sig, body, now.Add(6*time.Minute)) == nil {
		t.Fatal("an old timestamp verified")
	}
}

func TestHandler(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	var out bytes.Buffer
	now := time.Now()
	h := &handler{key: key, out: &out, seen: map[string]bool{}, now: func() time.Time { return now }}
	body := `{"type":"device_offline","channel":"1004","level":"warning","rule":"offline"}`
	send := func(sig string) int {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		ts := strconv.FormatInt(now.Unix(), 10)
		r.Header.Set("webhook-id", "d1")
		r.Header.Set("webhook-timestamp", ts)
		if sig == "" {
			mac := hmac.New(sha256.New, key)
			mac.Write([]byte("d1." + ts + "." + body))
			sig = "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
		}
		r.Header.Set("webhook-signature", sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if c := send(""); c != http.StatusNoContent {
		t.Fatalf("signed call answered %d", c)
	}
	if c := send("v1,AAAA"); c != http.StatusUnauthorized {
		t.Fatalf("a bad signature answered %d", c)
	}
	send("")
	if !strings.Contains(out.String(), "verified webhook id=d1 type=device_offline level=warning channel=1004") ||
		!strings.Contains(out.String(), "REFUSED") || !strings.Contains(out.String(), "(repeat, dropped)") {
		t.Fatalf("log:\n%s", out.String())
	}
}
