package poll

import (
	"testing"
	"time"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/internal/rtu"
)

func demoPlan(t testing.TB) *Plan {
	t.Helper()
	cfg, err := config.Load("../../config/comsrv.toml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(cfg.TemplateByID["power_meter"])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCompileDemoTemplate(t *testing.T) {
	p := demoPlan(t)
	if len(p.Tasks) != 2 {
		t.Fatalf("%d tasks, want 2", len(p.Tasks))
	}
	b1 := p.Tasks[0]
	r := b1.Req
	if r.Slave != 1 || r.Function != 3 || r.Address != 2000 || r.Quantity != 100 || b1.Trigger != Timer || b1.Interval != time.Second {
		t.Fatalf("block1 = %+v", b1)
	}
	want, _ := rtu.AppendRequest(nil, b1.Req)
	if string(b1.ADU) != string(want) {
		t.Fatalf("ADU % x, want % x", b1.ADU, want)
	}
	total := 0
	for _, task := range p.Tasks {
		total += len(task.Decoders)
	}
	if total != 21 {
		t.Fatalf("%d points decoded by the tasks, want 21", total)
	}
}

func TestDecode(t *testing.T) {
	p := demoPlan(t)
	task := &p.Tasks[0]
	payload := make([]byte, 200)
	payload[0], payload[1] = 0x08, 0x9D // 2000: 2205 → 220.5 V
	out, scratch, bad := task.Decode(payload, nil, nil)
	if bad != 0 {
		t.Fatalf("%d decode errors", bad)
	}
	got := map[string]string{}
	for i := 0; i+1 < len(out); i += 2 {
		got[out[i]] = out[i+1]
	}
	if got["10001"] != "220.5" || got["10002"] != "0" {
		t.Fatalf("decoded %v", got)
	}
	// A short payload never panics; the points it cannot cover are counted.
	out, _, bad = task.Decode(payload[:10], scratch, out[:0])
	if bad == 0 || len(out) >= 2*len(task.Decoders) {
		t.Fatalf("short payload: %d bad, %d values", bad, len(out)/2)
	}
}

func TestPhaseSpreadsLinks(t *testing.T) {
	const n = 10000
	buckets := make([]int, 10) // 100 ms buckets of a 1 s interval
	for i := 0; i < n; i++ {
		ph := Phase("ch"+string(rune('a'+i%26))+time.Duration(i).String(), 0, time.Second)
		if ph < 0 || ph >= time.Second {
			t.Fatalf("phase %v outside the interval", ph)
		}
		buckets[ph/(100*time.Millisecond)]++
	}
	for i, c := range buckets {
		if c < n/10/2 || c > n/10*2 {
			t.Fatalf("bucket %d holds %d of %d links: not spread (%v)", i, c, n, buckets)
		}
	}
	if Phase("1001", 0, time.Second) != Phase("1001", 0, time.Second) {
		t.Fatal("phase is not stable")
	}
}

func BenchmarkDecode(b *testing.B) {
	p := demoPlan(b)
	task := &p.Tasks[0]
	payload := make([]byte, 200)
	var out []string
	var scratch []byte
	b.ReportAllocs()
	for b.Loop() {
		out, scratch, _ = task.Decode(payload, scratch, out[:0])
	}
}
