package framelog

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestLogKeepsNewestAndFlushesByInterval(t *testing.T) {
	l := New(3, time.Second)
	t0 := time.UnixMilli(1_700_000_000_000)
	if l.Due(t0) {
		t.Fatal("empty log is due")
	}
	for i := 0; i < 5; i++ {
		l.Add(t0, RX, "rtu", []byte{byte(i), 0xAB})
	}
	if !l.Due(t0) {
		t.Fatal("log with entries and no flush yet is not due")
	}
	got := l.Take(t0)
	if len(got) != 3 || !strings.Contains(got[0], `"hex":"02ab"`) || !strings.Contains(got[2], `"hex":"04ab"`) {
		t.Fatalf("entries %v", got)
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(got[0]), &e); err != nil || e["ts"] != float64(1_700_000_000_000) || e["dir"] != "rx" || e["kind"] != "rtu" {
		t.Fatalf("entry %s: %v", got[0], err)
	}
	l.Add(t0, TX, "rtu", []byte{1})
	if l.Due(t0.Add(500*time.Millisecond)) || !l.Due(t0.Add(time.Second)) {
		t.Fatal("flush interval not honoured")
	}
	if l.Keep() != 3 {
		t.Fatal("keep")
	}
}

func TestLongFrameIsCut(t *testing.T) {
	l := New(1, 0)
	l.Add(time.Now(), RX, "data", make([]byte, MaxFrame+10))
	e := l.Take(time.Now())[0]
	if !strings.HasSuffix(e, `,"cut":true}`) || strings.Count(e, "0") < 2*MaxFrame || len(e) > 2*MaxFrame+100 {
		t.Fatalf("entry of %d bytes: %.60s…", len(e), e)
	}
}

func TestDisabledLogIsNil(t *testing.T) {
	l := New(0, time.Second)
	l.Add(time.Now(), RX, "rtu", []byte{1})
	if l != nil || l.Due(time.Now()) || l.Take(time.Now()) != nil || l.Keep() != 0 {
		t.Fatal("keep 0 must give a no-op nil log")
	}
}

func BenchmarkAdd(b *testing.B) {
	l := New(20, time.Second)
	frame := make([]byte, 205)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		l.Add(now, RX, "rtu", frame)
	}
}
