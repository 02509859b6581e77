package modbus

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/rtu"
	"github.com/voltedge/voltedge/internal/wait"
)

const serialTemplate = `
[[task]]
name = "regs"
slave = 1
function = 3
start = 0
count = 4
interval = "100ms"

[[task]]
name = "coils"
slave = 1
function = 1
start = 0
count = 4
interval = "100ms"

[[point]]
id = "1"
address = 0
scale = 0.01

[[point]]
id = "2"
address = 1
type = "int32"
order = "CDAB"

[[point]]
id = "3"
area = "coil"
address = 2
type = "bool"
`

// ptyPair links two pseudo-terminals with socat and returns their paths.
func ptyPair(t *testing.T) (master, slave string) {
	t.Helper()
	bin, err := exec.LookPath("socat")
	if err != nil {
		if os.Getenv("VOLTEDGE_REQUIRE_SOCAT") != "" {
			t.Fatal("socat not installed, and VOLTEDGE_REQUIRE_SOCAT is set")
		}
		t.Skip("socat not installed (apt-get install socat): serial RTU test skipped")
	}
	dir := t.TempDir()
	master, slave = filepath.Join(dir, "master"), filepath.Join(dir, "slave")
	cmd := exec.Command(bin, "-d", "-d", "pty,raw,echo=0,link="+master, "pty,raw,echo=0,link="+slave)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start socat: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	wait.For(t, 10*time.Second, "socat's pseudo-terminals", func() error {
		_, e1 := os.Stat(master)
		_, e2 := os.Stat(slave)
		return errors.Join(e1, e2)
	})
	return master, slave
}

// serveRTU answers Modbus RTU requests on f from d's unit 1 until f is closed.
// Other unit ids get no answer, as on a real bus.
func serveRTU(f *os.File, d *device) {
	buf := make([]byte, 0, 512)
	var tmp [256]byte
	var out []byte
	for {
		n, err := f.Read(tmp[:])
		if err != nil {
			return
		}
		if len(buf)+n > cap(buf) {
			buf = buf[:0] // garbage: start over
		}
		buf = append(buf, tmp[:n]...)
		for len(buf) > 0 {
			req, used, err := rtu.ParseRequest(buf)
			if errors.Is(err, rtu.ErrTruncated) {
				break
			}
			if used == 0 {
				buf = append(buf[:0], buf[1:]...)
				continue
			}
			if err == nil && req.Slave == 1 {
				out = d.answerRTU(out[:0], req)
				_, _ = f.Write(out)
			}
			buf = append(buf[:0], buf[used:]...)
		}
	}
}

func (d *device) answerRTU(dst []byte, req rtu.Request) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requests[req.Slave]++
	h, c := d.holding[req.Slave], d.coils[req.Slave]
	end := int(req.Address) + int(req.Quantity)
	if end > 64 {
		return rtu.AppendException(dst, req.Slave, req.Function, rtu.ExIllegalDataAddress)
	}
	var payload []byte
	switch req.Function {
	case rtu.ReadHoldingRegisters:
		for a := req.Address; int(a) < end; a++ {
			payload = append(payload, byte(h[a]>>8), byte(h[a]))
		}
	case rtu.ReadCoils:
		payload = rtu.PackBits(nil, c[req.Address:end])
	case rtu.WriteSingleRegister:
		h[req.Address] = uint16(req.Data[0])<<8 | uint16(req.Data[1])
	case rtu.WriteMultipleRegisters:
		for i := 0; i < int(req.Quantity); i++ {
			h[int(req.Address)+i] = uint16(req.Data[2*i])<<8 | uint16(req.Data[2*i+1])
		}
	case rtu.WriteSingleCoil:
		c[req.Address] = req.Data[0] == 0xFF
	default:
		return rtu.AppendException(dst, req.Slave, req.Function, rtu.ExIllegalFunction)
	}
	return rtu.AppendResponse(dst, req, payload)
}

func TestSerialRTU(t *testing.T) {
	master, slave := ptyPair(t)
	f, err := os.OpenFile(slave, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	dev := newDevice(1)
	dev.setHolding(1, 0, 23456)  // 234.56
	dev.setHolding(1, 1, 0xFFFE) // CDAB: low word first → 0xFFFFFFFE = -2
	dev.setHolding(1, 2, 0xFFFF)
	dev.coils[1][2] = true
	go serveRTU(f, dev)

	e := newEnv(t)
	url := "rtu://" + master
	ch := "[[channel]]\nid = \"s1\"\nurl = \"" + url + "\"\ntemplate = \"meter\"\nbaud = 19200\nparity = \"even\"\n"
	cfg := loadConfig(t, testComsrv, serialTemplate, ch)
	startSet(t, e, cfg)

	values := keys.ChannelValues("s1")
	wait.For(t, 15*time.Second, "serial values", func() error {
		v := e.hgetall(t, values)
		return wait.Check(v["1"] == "234.56" && v["2"] == "-2" && v["3"] == "1", "values %v", v)

	})
	if s := e.hget(t, keys.ChannelStatus("s1"), "online"); s != "1" {
		t.Fatalf("online = %q", s)
	}
	e.deliver(t, "s1", &contract.Command{ID: "1", Point: "1", Value: "1.5"})
	if o := e.rep.wait(t, "1"); o.Status != contract.OK {
		t.Fatalf("serial write: %+v", o)
	}
	if v := dev.getHolding(1, 0); v != 150 {
		t.Fatalf("register 0 = %d, want 150", v)
	}
	wait.For(t, 5*time.Second, "written value polled back", func() error { return wait.Equal(e.hget(t, values, "1"), "1.5") })
}
