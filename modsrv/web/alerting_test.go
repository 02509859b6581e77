package web_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/internal/wait"
)

// seedAlerting writes what alarmsrv and the Lua library would for the
// alerting sections of the console:
//   - an active alarm on pcs1:temp (alarm:active, as the Lua library's
//     limit check writes it) and one on bms:soc;
//   - a rule of alarmsrv.toml (origin file, as alarmsrv writes its file
//     rules at start) giving alarms on pcs* the level critical, and a rule
//     made through the API (origin api);
//   - the webhook target ops at url (webhook:targets, as an operator or
//     alarmsrv's configuration puts it) with counters as alarmsrv's
//     delivery engine keeps them (webhook:stats:ops) and one dead letter
//     (webhook:dead, as the engine writes it after the last attempt, with
//     the dead counter raised in the same step).
func seedAlerting(t *testing.T, rc rueidis.Client, url, secret string) (deadEntry string) {
	t.Helper()
	do := func(args ...string) rueidis.RedisResult { return redistest.Do(t, rc, args...) }
	now := time.Now().UnixMilli()
	do("HSET", keys.AlarmActive, "pcs1:temp", fmt.Sprintf(`{"kind":"high","value":91.5,"limit":80,"ts":%d}`, now-60_000))
	do("HSET", keys.AlarmActive, "bms:soc", fmt.Sprintf(`{"kind":"low","value":8,"limit":10,"ts":%d}`, now-30_000))
	rule := func(r alerting.Rule) {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		do("HSET", keys.AlarmRules, r.ID, string(b))
	}
	rule(alerting.Rule{ID: "hot", Name: "PCS too hot", Enabled: true, Events: []string{"alarm_raised"}, Model: "pcs*",
		Level: "critical", Targets: []string{"ops"}, Origin: alerting.OriginFile})
	rule(alerting.Rule{ID: "door", Name: "<b>Door</b> open", Enabled: true, Events: []string{"custom:door"},
		Targets: []string{"ops"}, Origin: alerting.OriginAPI})
	tg, err := json.Marshal(alerting.Target{ID: "ops", URL: url, Secrets: []string{secret}, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	do("HSET", keys.WebhookTargets, "ops", string(tg))
	do("HSET", keys.WebhookStats("ops"), alerting.StatMatched, "12", alerting.StatDelivered, "9", alerting.StatDead, "0",
		alerting.StatAttempts, "15", alerting.StatLastStatus, "200", alerting.StatLastSuccess, strconv.FormatInt(now-5000, 10))
	deadEntry, err = do("XADD", keys.WebhookDead, "*", alerting.FieldTarget, "ops", alerting.FieldID, "0123abcd",
		alerting.FieldKey, "pcs1:temp", alerting.FieldBody, `{"type":"alarm_raised","model":"pcs1","point":"<img src=x>"}`,
		alerting.FieldTS, strconv.FormatInt(now-100_000, 10), alerting.FieldAttempts, "8", alerting.FieldLastStatus, "500",
		alerting.FieldLastError, "HTTP 500", alerting.FieldDeadAt, strconv.FormatInt(now-10_000, 10)).ToString()
	if err != nil {
		t.Fatal(err)
	}
	do("HINCRBY", keys.WebhookStats("ops"), alerting.StatDead, "1")
	do("HINCRBY", keys.WebhookStats("ops"), alerting.StatMatched, "1")
	return deadEntry
}

// rowOf is an expression giving the text of the row of table whose
// data-attr is id.
func rowOf(table, attr, id string) string {
	return `(() => { const r = [...document.querySelectorAll('#` + table + ` tbody tr')].find(r => r.dataset.` + attr + ` === ` +
		jsString(id) + `); return r ? r.textContent : ''; })()`
}

// TestConsoleAlerting: alarms with their levels are shelved from the
// console; a rule is disabled and one created; the target's counters show
// and its test reaches a receiver; a dead letter is sent again.
func TestConsoleAlerting(t *testing.T) {
	bin, rc, base := consoleServer(t, "")
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var got atomic.Int32
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ts, _ := strconv.ParseInt(r.Header.Get(alerting.HeaderTimestamp), 10, 64)
		want, _ := alerting.Sign([]string{secret}, r.Header.Get(alerting.HeaderID), time.Unix(ts, 0), b)
		if want == "" || want != r.Header.Get(alerting.HeaderSignature) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		got.Add(1)
		w.Header().Set("X-Receiver", "plant-ops")
		fmt.Fprint(w, "thanks <script>x</script>")
	}))
	t.Cleanup(rcv.Close)
	dead := seedAlerting(t, rc, rcv.URL, secret)

	js, waitFor, dialogs, screenshot, resize := openConsole(t, bin, base)
	resize(1280, 800)
	waitFor("the level badges", `[...document.querySelectorAll('#alarm-levels .badge')].map(b => b.textContent).join(',')`,
		"critical 1,warning 1,info 0")
	waitFor("the level column", `(() => { const r = document.querySelector('#alarms tbody tr[data-ref="pcs1:temp"]'); return r ? r.cells[1].textContent : ''; })()`, "critical")
	waitFor("the rules", `String(document.querySelectorAll('#rules tbody tr').length)`, "2")
	waitFor("markup in a rule's name stays text", `String(document.querySelectorAll('#rules b').length) + ' ' + String(document.querySelector('#rules tbody').textContent.includes('<b>Door</b> open'))`, "0 true")
	waitFor("the target's counters", `(() => { const r = document.querySelector('#webhooks tbody tr[data-target="ops"]'); return r ? [...r.cells].slice(2, 9).map(c => c.textContent).join(' ') : ''; })()`,
		"13 9 0 0 0 1 0")
	waitFor("the dead letter", `String(`+rowOf("dead", "entry", dead)+`.includes('<img src=x>'))`, "true")
	if n := js(`String(document.querySelectorAll('#dead img, #rules b').length)`); n != "0" {
		t.Fatalf("%s elements made from data", n)
	}
	waitFor("no write buttons before the login", `String(document.querySelectorAll('#alarms form.shelve, #rules input[type=checkbox], #dead button.resend, #webhooks button.test').length)`, "0")

	login(js, waitFor)

	// Shelve pcs1:temp for 8 hours.
	waitFor("the shelve form", `String(!!document.querySelector('#alarms tr[data-ref="pcs1:temp"] form.shelve'))`, "true")
	js(`(() => { const f = document.querySelector('#alarms tr[data-ref="pcs1:temp"] form.shelve'); f.querySelector('select').value = '8h'; f.requestSubmit(); return ''; })()`)
	waitFor("shown shelved", `String(document.querySelector('#alarms tr[data-ref="pcs1:temp"]').classList.contains('shelved'))`, "true")
	wait.For(t, patience, "alarm:shelved", func() error {
		js, err := rc.Do(t.Context(), rc.B().Hget().Key(keys.AlarmShelved).Field("pcs1:temp").Build()).ToString()
		if err != nil {
			return err
		}
		var sh struct {
			User  string `json:"user"`
			Until int64  `json:"until"`
		}
		_ = json.Unmarshal([]byte(js), &sh)
		left := time.Until(time.UnixMilli(sh.Until))
		return wait.Check(sh.User == "op" && left > 7*time.Hour && left <= 8*time.Hour, "%s", js)
	})
	waitFor("who shelved it", `String(document.querySelector('#alarms tr[data-ref="pcs1:temp"] td.shelf').textContent.includes('(op)'))`, "true")

	// Disable the API rule; the file rule has no switch.
	if n := js(`String(document.querySelectorAll('#rules tr[data-rule="hot"] input[type=checkbox]').length)`); n != "0" {
		t.Fatal("a file rule has a switch")
	}
	waitFor("the rule switch", `String(!!document.querySelector('#rules tr[data-rule="door"] input[type=checkbox]'))`, "true")
	js(`document.querySelector('#rules tr[data-rule="door"] input[type=checkbox]').click(), ''`)
	wait.For(t, patience, "the rule disabled in Redis", func() error {
		r, _, err := alerting.GetRule(t.Context(), rc, "door")
		return wait.Check(err == nil && !r.Enabled && r.Name == "<b>Door</b> open", "%+v %v", r, err)
	})

	// Create a rule from the form, after testing it.
	js(`document.getElementById('rule-new').click(), ''`)
	js(`(() => { document.getElementById('rule-json').value = JSON.stringify({id: 'gate', events: ['custom:gate'], level: 'info', targets: ['ops']});
		document.getElementById('rule-event').value = JSON.stringify({type: 'custom:gate'}); document.getElementById('rule-test').click(); return ''; })()`)
	waitFor("the test's answer", `String(document.getElementById('rule-result').textContent.startsWith('Fires.'))`, "true")
	js(`document.getElementById('rule-form').requestSubmit(), ''`)
	waitFor("the new rule listed", `String(!!document.querySelector('#rules tr[data-rule="gate"]'))`, "true")
	if r, ok, err := alerting.GetRule(t.Context(), rc, "gate"); err != nil || !ok || r.Origin != alerting.OriginAPI || r.Level != "info" {
		t.Fatalf("created rule %+v %v %v", r, ok, err)
	}

	// The target's test reaches the receiver, signed; its answer is shown as text.
	js(`document.querySelector('#webhooks tr[data-target="ops"] button.test').click(), ''`)
	waitFor("the receiver's answer", `(() => { const s = document.getElementById('webhook-result').textContent; return String(s.includes('HTTP 200') && s.includes('plant-ops') && s.includes('thanks <script>x</script>')); })()`, "true")
	if got.Load() != 1 {
		t.Fatalf("%d signed requests received", got.Load())
	}

	// Disable the target from the console: its secret stays as it was.
	js(`document.querySelector('#webhooks tr[data-target="ops"] button.toggle').click(), ''`)
	wait.For(t, patience, "the target disabled in Redis", func() error {
		js, err := rc.Do(t.Context(), rc.B().Hget().Key(keys.WebhookTargets).Field("ops").Build()).ToString()
		var tg alerting.Target
		_ = json.Unmarshal([]byte(js), &tg)
		return wait.Check(err == nil && !tg.Enabled && len(tg.Secrets) == 1 && tg.Secrets[0] == secret, "%v", err)
	})
	waitFor("shown disabled", `document.querySelector('#webhooks tr[data-target="ops"]').cells[1].textContent`, "disabled")

	// Send the dead letter again: it leaves webhook:dead for the target's queue.
	js(`document.querySelector('#dead tr[data-entry="` + dead + `"] button.resend').click(), ''`)
	wait.For(t, patience, "the dead letter queued again", func() error {
		n, err := rc.Do(t.Context(), rc.B().Xlen().Key(keys.WebhookQueue("ops")).Build()).AsInt64()
		d, err2 := rc.Do(t.Context(), rc.B().Xlen().Key(keys.WebhookDead).Build()).AsInt64()
		return wait.Check(err == nil && err2 == nil && n == 1 && d == 0, "queue %d dead %d", n, d)
	})
	waitFor("no dead letter shown", `document.querySelector('#dead tbody').textContent`, "no dead letters")
	waitFor("the counters after it", `(() => { const r = document.querySelector('#webhooks tbody tr[data-target="ops"]'); return r ? [...r.cells].slice(2, 9).map(c => c.textContent).join(' ') : ''; })()`,
		"13 9 0 0 1 0 0")

	// The run log of a rule.
	run, _ := json.Marshal(alerting.Run{Event: alerting.Event{Type: "alarm_raised", Model: "pcs1", Point: "temp"}, TS: time.Now().UnixMilli(),
		Kind: alerting.RunNotify, Actions: []alerting.Action{{Target: "ops", Delivery: "d1"}}})
	redistest.Do(t, rc, "LPUSH", keys.AlarmRuleRuns("hot"), string(run))
	js(`document.querySelector('#rules tr[data-rule="hot"] button.runs').click(), ''`)
	waitFor("the run log", `(() => { const r = document.querySelector('#runs tbody tr'); return r ? r.cells[2].textContent + ' ' + r.cells[3].textContent : ''; })()`,
		"alarm_raised pcs1:temp ops")

	waitFor("nothing off-screen at 1280 px", offScreen, "")
	if p := os.Getenv("VOLTEDGE_SCREENSHOT_ALERTING"); p != "" {
		if png, err := screenshot(); err == nil {
			_ = os.WriteFile(p, png, 0o644)
		}
	}
	resize(800, 1000)
	waitFor("nothing off-screen at 800 px", offScreen, "")
	resize(1280, 800)

	// Unshelve.
	js(`document.querySelector('#alarms tr[data-ref="pcs1:temp"] button.unshelve').click(), ''`)
	waitFor("no longer shelved", `String(document.querySelector('#alarms tr[data-ref="pcs1:temp"]').classList.contains('shelved'))`, "false")
	if strings.Contains(js(`document.body.innerText`), "rules.") {
		t.Fatal("a string key shows")
	}
	if d := dialogs(); len(d) != 0 {
		t.Fatalf("dialogs %q", d)
	}
}

// seedShowcaseAlerting adds to the showcase plant what alarmsrv would
// hold: a file rule making pump pressure alarms critical, an API rule, a
// webhook target with its counters, and a dead letter.
func seedShowcaseAlerting(t *testing.T, rc rueidis.Client) {
	t.Helper()
	do := func(args ...string) rueidis.RedisResult { return redistest.Do(t, rc, args...) }
	now := time.Now().UnixMilli()
	for _, r := range []alerting.Rule{
		{ID: "pump_pressure", Name: "Pump pressure high", Enabled: true, Events: []string{"alarm_raised", "alarm_cleared"},
			Model: "pump_station_*", Point: "pressure", Level: "critical", Targets: []string{"ops_desk"}, Origin: alerting.OriginFile},
		{ID: "incomer_power", Name: "Incomer above 40 kW for 1 min", Enabled: true, Events: []string{"data"}, Model: "main_incomer",
			Point: "power", Condition: &alerting.Condition{Op: ">", Value: 40}, Level: "warning", Targets: []string{"ops_desk"}, Origin: alerting.OriginAPI},
	} {
		if r.Condition != nil {
			r.Condition.OnDelay.Duration = time.Minute
		}
		b, _ := json.Marshal(r)
		do("HSET", keys.AlarmRules, r.ID, string(b))
	}
	tg, _ := json.Marshal(alerting.Target{ID: "ops_desk", URL: "https://ops.example.com/hooks/voltedge", Enabled: true,
		Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}})
	do("HSET", keys.WebhookTargets, "ops_desk", string(tg))
	do("HSET", keys.WebhookStats("ops_desk"), alerting.StatMatched, "42", alerting.StatDelivered, "41", alerting.StatDead, "1",
		alerting.StatAttempts, "49", alerting.StatLastStatus, "200", alerting.StatLastSuccess, strconv.FormatInt(now-90_000, 10))
	do("XADD", keys.WebhookDead, "*", alerting.FieldTarget, "ops_desk", alerting.FieldID, "9f2c61d0a4b7e3c5",
		alerting.FieldKey, "pump_station_2:pressure", alerting.FieldBody, `{"type":"alarm_raised","model":"pump_station_2","point":"pressure","value":"4.2"}`,
		alerting.FieldTS, strconv.FormatInt(now-28*3600_000, 10), alerting.FieldAttempts, "8", alerting.FieldLastStatus, "503",
		alerting.FieldLastError, "HTTP 503", alerting.FieldDeadAt, strconv.FormatInt(now-3600_000, 10))
}
