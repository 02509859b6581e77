package fleet

import (
	"bufio"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/wait"
)

// lineMaster plays comsrv's side of a line link.
type lineMaster struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
	id   string
}

// startLineDevice runs a line device and checks its registration line.
func startLineDevice(t *testing.T, cfg DeviceConfig, st *Stats) *lineMaster {
	t.Helper()
	cfg.Profile = ProfileLine
	if cfg.ID == nil {
		cfg.ID = []byte("DEV001\n")
	}
	conn := acceptDevice(t, cfg, st)
	m := &lineMaster{t: t, conn: conn, br: bufio.NewReader(conn), id: strings.TrimSuffix(string(cfg.ID), "\n")}
	if l := m.line(); l != m.id {
		t.Fatalf("registration %q, want %q", l, m.id)
	}
	return m
}

// line reads one line within 3 seconds.
func (m *lineMaster) line() string {
	m.t.Helper()
	m.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	s, err := m.br.ReadString('\n')
	if err != nil {
		m.t.Fatalf("read line: %v", err)
	}
	return strings.TrimSuffix(s, "\n")
}

func (m *lineMaster) send(s string) {
	m.t.Helper()
	if _, err := m.conn.Write([]byte(s)); err != nil {
		m.t.Fatal(err)
	}
}

func TestLineDevice(t *testing.T) {
	st := new(Stats)
	log := NewLineLog(2)
	got := make(chan string, 16)
	m := startLineDevice(t, DeviceConfig{
		HeartbeatInterval: 30 * time.Millisecond, FirstHeartbeat: 5 * time.Millisecond,
		DataLines: []string{"temp=1", "temp=2"}, DataInterval: 20 * time.Millisecond,
		Lines: log, OnLine: func(l string) { got <- l },
	}, st)

	// Lines to the device: whole, longer than the bound (in two writes), and
	// with "\r\n" one byte at a time.
	m.send("set,DEV001,42\n")
	long := strings.Repeat("x", 5000)
	m.send(long[:3000])
	m.send(long[3000:] + "\n")
	for _, b := range []byte("reset,DEV001,\r\n") {
		m.send(string(b))
		time.Sleep(time.Millisecond) // lets each byte arrive as a read of its own

	}
	for i, want := range []string{"set,DEV001,42", long[:DefaultMaxLineLength], "reset,DEV001,"} {
		select {
		case l := <-got:
			if l != want {
				t.Fatalf("line %d: %d bytes %.20q…, want %d bytes %.20q…", i, len(l), l, len(want), want)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("line %d not received", i)
		}
	}
	if lines := log.Lines(); log.Total() != 3 || !slices.Equal(lines, []string{long[:DefaultMaxLineLength], "reset,DEV001,"}) {
		t.Fatalf("log: %d lines, kept %d", log.Total(), len(lines))
	}
	if l, ok := log.Last(); !ok || l != "reset,DEV001," {
		t.Fatalf("last %q %v", l, ok)
	}
	if st.LinesIn.Load() != 3 || st.LinesTruncated.Load() != 1 {
		t.Fatalf("stats %+v", st.Snapshot())
	}

	// From the device: its id as heartbeat, and the data lines in turn.
	var hb int
	var data []string
	for hb < 3 || len(data) < 3 {
		switch l := m.line(); {
		case l == m.id:
			hb++
		case strings.HasPrefix(l, "temp="):
			data = append(data, l)
		default:
			t.Fatalf("unexpected line %q", l)
		}
	}
	if !slices.Equal(data[:3], []string{"temp=1", "temp=2", "temp=1"}) {
		t.Fatalf("data lines %q", data)
	}
	// The counters follow the writes.
	wait.For(t, patience, "heartbeats and data lines", func() error {
		return wait.Check(st.Heartbeats.Load() >= 3 && st.DataSent.Load() >= 3, "stats %+v", st.Snapshot())
	})
}

func TestLineReply(t *testing.T) {
	st := new(Stats)
	m := startLineDevice(t, DeviceConfig{
		ID: []byte("DEV7\r\n"), NoHeartbeat: true, MaxLineLength: 8, SplitWrites: true,
		LineReply: func(l string) string {
			if l == "quiet" {
				return ""
			}
			return "ack:" + l
		},
	}, st)
	m.send("quiet\nping\n0123456789\n")
	// No heartbeat comes between: the first line after registration is the answer.
	for _, want := range []string{"ack:ping", "ack:01234567"} {
		if l := m.line(); l != want {
			t.Fatalf("got %q, want %q", l, want)
		}
	}
	if st.Heartbeats.Load() != 0 || st.LinesIn.Load() != 3 || st.LinesTruncated.Load() != 1 {
		t.Fatalf("stats %+v", st.Snapshot())
	}
}

func TestLineLog(t *testing.T) {
	l := NewLineLog(0)
	if _, ok := l.Last(); ok || len(l.Lines()) != 0 {
		t.Fatal("empty log has lines")
	}
	for i := range DefaultLineLogKeep + 5 {
		l.Add(strings.Repeat("a", i))
	}
	lines := l.Lines()
	if l.Total() != DefaultLineLogKeep+5 || len(lines) != DefaultLineLogKeep || len(lines[0]) != 5 || len(lines[len(lines)-1]) != DefaultLineLogKeep+4 {
		t.Fatalf("total %d, %d lines, first %d bytes", l.Total(), len(lines), len(lines[0]))
	}
	if last, _ := l.Last(); len(last) != DefaultLineLogKeep+4 {
		t.Fatalf("last %d bytes", len(last))
	}
}

func TestFleetLine(t *testing.T) {
	const n = 20
	ln := listen(t)
	reg := &registry{ids: map[string]int{}}
	t.Cleanup(reg.close)
	go reg.serve(ln, readLine, func(c net.Conn, _ *bufio.Reader) { c.Write([]byte("hello\n")) })
	st := new(Stats)
	log := NewLineLog(n)
	runFleet(t, FleetConfig{
		N: n, Prefix: "L", Start: 1, Width: 3, Ramp: 5000, Stats: st,
		Device: DeviceConfig{Addr: ln.Addr().String(), Profile: ProfileLine, Lines: log, HeartbeatInterval: time.Minute, FirstHeartbeat: time.Minute},
	})
	wait.For(t, patience, "every line", func() error { return wait.Equal(log.Total(), n) })
	reg.mu.Lock()
	defer reg.mu.Unlock()
	for _, id := range []string{"L001", "L020"} {
		if reg.ids[id] != 1 {
			t.Errorf("id %q registered %d times", id, reg.ids[id])
		}
	}
}
