package web_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/history"
	"github.com/voltedge/voltedge/internal/history/historytest"
	"github.com/voltedge/voltedge/internal/redistest"
	"github.com/voltedge/voltedge/scripts"
)

// TestConsoleHistory: with netsrv's MySQL store configured, the chart loads
// a point's last hour from it and then follows the live values, the CSV
// export downloads that model's stored values, the connection history
// pages past Redis's events into the stored ones, and the alarm history
// shows the stored alarms.
func TestConsoleHistory(t *testing.T) {
	dsn := historytest.DSN(t)
	w, err := history.Open(context.Background(), dsn, history.Options{Site: "box1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	now := time.Now().UnixMilli()
	var b history.Batch
	for i := range 300 { // the last 50 minutes, one sample every 10 s
		b.Samples = append(b.Samples, history.Sample{Channel: "1001", Point: "10001", Model: "power_meter", PointName: "voltage",
			Value: strconv.Itoa(200 + i%50), TS: now - 3_000_000 + int64(i)*10_000})
	}
	for i := range 3 {
		ts := now - 7_200_000 + int64(i)*60_000
		b.ConnEvents = append(b.ConnEvents, history.ConnEvent{EventID: fmt.Sprintf("%d-0", ts), Event: "offline", Channel: "1001",
			Listener: "dtu", Registration: "OLD-" + strconv.Itoa(i), Remote: "10.0.0.7:4000", Reason: xssReason, TS: ts})
	}
	raised := now - 3*3_600_000
	b.Alarms = []history.Alarm{
		{Event: history.AlarmRaise, Model: "power_meter", Point: "current", Kind: "high", Level: "major", Value: "81.5", Limit: "80", RaisedTS: raised},
		{Event: history.AlarmClear, Model: "power_meter", Point: "current", RaisedTS: raised, TS: raised + 60_000},
		{Event: history.AlarmAck, Model: "power_meter", Point: "current", RaisedTS: raised, TS: raised + 30_000, User: "alice"},
	}
	if err := w.Write(context.Background(), &b); err != nil {
		t.Fatal(err)
	}

	bin, rc, base := consoleServer(t, "[history]\nmysql_dsn = "+strconv.Quote(dsn)+"\nsite = \"box1\"\n")
	js, waitFor, dialogs, _, resize := openConsole(t, bin, base)
	waitFor("the WebSocket", `document.getElementById('live').textContent`, "live")
	waitFor("the models", `String(document.querySelectorAll('#models .model').length)`, "2")
	voltage := `[...document.querySelectorAll('#models .model')].find(e => e.dataset.model === 'power_meter').querySelector('tr[data-point="voltage"]')`
	waitFor("the voltage row", `String(!!document.querySelector('#models .model[data-model="power_meter"] tr[data-point="voltage"]'))`, "true")
	js(voltage + `.click(), ''`)
	waitFor("the chart title", `document.getElementById('chart-title').textContent.replace(/ \(.*\)$/, '')`, "power_meter · voltage")

	// The last hour from MySQL: 1 h / 600 = 6 s buckets, one sample in each of 300.
	js(`(() => { const s = document.getElementById('chart-range'); s.value = '3600000'; s.dispatchEvent(new Event('change')); return ''; })()`)
	waitFor("the stored buckets", `document.getElementById('chart').dataset.stored`, "300")
	waitFor("no chart message", `document.getElementById('chart-msg').textContent`, "")
	points := js(`document.getElementById('chart').dataset.points`)
	// Then live values are appended.
	redistest.Do(t, rc, "FCALL", scripts.FnSyncMeasurement, "0", "1001", "10001", "241.5")
	want, _ := strconv.Atoi(points)
	waitFor("a live value appended", `document.getElementById('chart').dataset.points`, strconv.Itoa(want+1))
	waitFor("still the stored buckets", `document.getElementById('chart').dataset.stored`, "300")

	// Export: the page downloads through a link; its address is fetched here.
	js(`document.addEventListener('click', (e) => { const a = e.target.closest && e.target.closest('a[download]');
		if (a) { window.exported = a.href; e.preventDefault(); } }, true), ''`)
	js(`document.getElementById('export-csv').click(), ''`)
	waitFor("the export link", `String((window.exported || '').startsWith(`+jsString(base+"/export?format=csv&model=power_meter&from=")+`))`, "true")
	href := js(`window.exported`)
	resp, err := http.Get(href)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), `attachment; filename="voltedge_box1_power_meter_`) {
		t.Fatalf("export %s: %d %v", href, resp.StatusCode, resp.Header)
	}
	recs, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if err != nil || len(recs) != 301 || recs[1][2] != "power_meter" || recs[1][3] != "voltage" || recs[1][4] != "200" || recs[300][4] != "249" {
		t.Fatalf("export: %v, %d records: %q … %q", err, len(recs), recs[:min(2, len(recs))], recs[len(recs)-1])
	}
	if js(`document.getElementById('export-msg').textContent`) != "" {
		t.Fatalf("export message %q", js(`document.getElementById('export-msg').textContent`))
	}

	// The connection history: Redis's two events, then the stored older ones.
	waitFor("the events", `String(document.querySelectorAll('#events tbody tr').length)`, "2")
	waitFor("the older button", `String(!document.getElementById('events-older').hidden)`, "true")
	js(`document.getElementById('events-older').click(), ''`)
	waitFor("the stored events", `String(document.querySelectorAll('#events tbody tr').length)`, "5")
	waitFor("the oldest stored event", `document.querySelector('#events tbody tr:last-child').cells[3].textContent`, "OLD-0")
	waitFor("the end of the history", `document.getElementById('events-msg').textContent`, "no older events")

	// The alarm history.
	js(`document.getElementById('alarm-history-toggle').click(), ''`)
	waitFor("the stored alarm", `(() => { const li = document.querySelector('#alarm-history li'); return li ? String(li.textContent.includes('power_meter:current high major value 81.5 limit 80') && li.textContent.includes('acknowledged by alice')) : ''; })()`, "true")
	waitFor("the toggle", `document.getElementById('alarm-history-toggle').textContent`, "Hide alarm history")

	resize(1280, 800)
	waitFor("nothing off-screen at 1280 px", offScreen, "")
	if d := dialogs(); len(d) > 0 {
		t.Fatalf("dialogs %q", d)
	}
	if n := js(`String(document.querySelectorAll('img, svg, iframe, object, embed, script:not([src])').length)`); n != "0" {
		t.Errorf("stored strings created %s elements", n)
	}
}
