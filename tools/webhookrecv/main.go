// Command webhookrecv is a webhook receiver for trying alarmsrv out (make
// demo starts one): it checks each request's Standard Webhooks signature
// the way any receiver would — with its own code, from the specification —
// drops repeats by webhook-id, prints one line per call and answers 204
// (401 to a request that is not signed with the secret, or whose timestamp
// is more than 5 minutes off).
//
//	webhookrecv -listen 127.0.0.1:8010 -secret whsec_… [-log calls.log]
//
// The secret may also come from $VOLTEDGE_WEBHOOK_SECRET.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxBody bounds a request body.
const maxBody = 1 << 20

// tolerance is how far a webhook-timestamp may be from now.
const tolerance = 5 * time.Minute

func main() {
	listen := flag.String("listen", "127.0.0.1:8010", "address to listen on")
	secret := flag.String("secret", os.Getenv("VOLTEDGE_WEBHOOK_SECRET"), "the target's secret, whsec_<base64> ($VOLTEDGE_WEBHOOK_SECRET)")
	logPath := flag.String("log", "", "also append each verified call to this file")
	flag.Parse()
	key, err := decodeSecret(*secret)
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhookrecv:", err)
		os.Exit(2)
	}
	out := io.Writer(os.Stdout)
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, "webhookrecv:", err)
			os.Exit(1)
		}
		defer f.Close()
		out = io.MultiWriter(os.Stdout, f)
	}
	h := &handler{key: key, out: out, seen: map[string]bool{}, now: time.Now}
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	slog.Info("webhookrecv listening", "addr", *listen)
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "webhookrecv:", err)
		os.Exit(1)
	}
}

// decodeSecret reads a whsec_ secret.
func decodeSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return nil, errors.New("the secret must start with whsec_ (-secret or $VOLTEDGE_WEBHOOK_SECRET)")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) == 0 {
		return nil, fmt.Errorf("the secret is not whsec_<base64>: %v", err)
	}
	return key, nil
}

// handler verifies and logs calls.
type handler struct {
	key []byte
	out io.Writer
	now func() time.Time

	mu   sync.Mutex
	seen map[string]bool // webhook-ids received, for dropping repeats
}

// verify checks a request's signature as the Standard Webhooks
// specification says: HMAC-SHA256 with the secret's bytes over
// "{webhook-id}.{webhook-timestamp}.{body}", base64, compared in constant
// time with each "v1,<signature>" of the space-separated header.
func verify(key []byte, id, ts, sigs string, body []byte, now time.Time) error {
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("webhook-timestamp is not Unix seconds")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("webhook-timestamp too far from now")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		v, b64, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no signature matches")
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	id := r.Header.Get("webhook-id")
	if err := verify(h.key, id, r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body, h.now()); err != nil {
		fmt.Fprintf(h.out, "%s REFUSED %s: %v\n", h.now().Format(time.RFC3339), r.RemoteAddr, err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	h.mu.Lock()
	repeat := h.seen[id]
	if len(h.seen) > 100000 {
		h.seen = map[string]bool{}
	}
	h.seen[id] = true
	h.mu.Unlock()
	var ev struct {
		Type, Channel, Model, Point, Value, Level, Rule string
		TS                                              int64
	}
	_ = json.Unmarshal(body, &ev)
	note := ""
	if repeat {
		note = " (repeat, dropped)"
	}
	fmt.Fprintf(h.out, "%s verified webhook id=%s type=%s level=%s channel=%s model=%s point=%s value=%s rule=%s%s\n",
		h.now().Format(time.RFC3339), id, ev.Type, ev.Level, ev.Channel, ev.Model, ev.Point, ev.Value, ev.Rule, note)
	w.WriteHeader(http.StatusNoContent)
}
