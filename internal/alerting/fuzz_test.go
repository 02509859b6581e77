package alerting

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzRuleAndEvent: any rule and event JSON a client sends to modsrv's rule
// endpoints is either refused or evaluated without a panic.
func FuzzRuleAndEvent(f *testing.F) {
	f.Add([]byte(`{"id":"hv","events":["data"],"model":"m*","point":"v","condition":{"op":">","value":250,"on_delay":"5s"},"targets":["ops"]}`),
		[]byte(`{"type":"data","model":"m1","point":"v","value":"260"}`))
	f.Add([]byte(`{"id":"x","events":["custom:*"],"renotify_every":"1s","max_notifications":3}`), []byte(`{"type":"custom:door"}`))
	f.Add([]byte(`{"id":"c","events":["data"],"condition":{"op":"changed"}}`), []byte(`{"type":"data","value":"abc"}`))
	f.Fuzz(func(t *testing.T, rule, event []byte) {
		var r Rule
		if json.Unmarshal(rule, &r) != nil || r.Validate() != nil {
			return
		}
		var e Event
		if json.Unmarshal(event, &e) != nil {
			return
		}
		_ = TestRule(r, e)
	})
}

// FuzzTarget: a stored or sent target either fails to parse or renders an
// event (its template included) without a panic.
func FuzzTarget(f *testing.F) {
	f.Add([]byte(`{"id":"ops","url":"https://h.example/x","template":"{\"text\":\"{{.Type}} {{.Model}}\"}","enabled":true}`))
	f.Add([]byte(`{"id":"ops","url":"http://h/x","secrets":["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],"schedule":["0s","5s"],"jitter":0.1}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		tg, err := ParseTarget("ops", raw)
		if err != nil {
			return
		}
		_, _ = tg.Render(SampleEvent(time.Unix(1700000000, 0)))
		_ = tg.Redacted()
	})
}

// FuzzRetryAfter: a receiver's Retry-After header never panics and never
// gives a negative wait.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "Wed, 21 Oct 2015 07:28:00 GMT", "-5", "99999999999999999999", ""} {
		f.Add(s)
	}
	now := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, v string) {
		if d := ParseRetryAfter(v, now); d < 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v", v, d)
		}
	})
}
