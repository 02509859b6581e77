package modbus

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/voltedge/voltedge/comsrv/poll"
	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/rtu"
	"github.com/voltedge/voltedge/internal/wait"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		res  result
		code uint8
	}{
		{nil, resOK, 0},
		{mb.ErrIllegalFunction, resException, 1},
		{mb.ErrIllegalDataAddress, resException, 2},
		{mb.ErrIllegalDataValue, resException, 3},
		{mb.ErrServerDeviceFailure, resException, 4},
		{mb.ErrAcknowledge, resException, 5},
		{mb.ErrServerDeviceBusy, resException, 6},
		{mb.ErrMemoryParityError, resException, 8},
		{mb.ErrGWPathUnavailable, resException, 10},
		{mb.ErrGWTargetFailedToRespond, resException, 11},
		{fmt.Errorf("unknown exception code (%v)", uint8(77)), resException, 77},
		{mb.ErrRequestTimedOut, resTimeout, 0},
		{mb.ErrBadCRC, resCRC, 0},
		{mb.ErrProtocolError, resMismatch, 0},
		{mb.ErrBadUnitId, resMismatch, 0},
		{mb.ErrShortFrame, resMismatch, 0},
		{mb.ErrUnexpectedParameters, resInvalid, 0},
		{io.EOF, resIO, 0},
		{&net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, resIO, 0},
		{errors.New("unknown exception code (300)"), resIO, 0},
	} {
		res, code := classify(tc.err)
		if res != tc.res || code != tc.code {
			t.Errorf("classify(%v) = %d, %d; want %d, %d", tc.err, res, code, tc.res, tc.code)
		}
	}
	if lostReason(io.EOF) != ReasonClosed || lostReason(errors.New("x")) != "connection: x" {
		t.Error("lostReason")
	}
}

func FuzzParseUnknownException(f *testing.F) {
	f.Add("unknown exception code (12)")
	f.Add("unknown exception code ()")
	f.Add("unknown exception code (256)")
	f.Fuzz(func(t *testing.T, s string) {
		code, ok := parseUnknownException(s)
		if !ok {
			return
		}
		if !strings.HasPrefix(s, unknownException) || !strings.HasSuffix(s, ")") || len(s) > len(unknownException)+4 {
			t.Fatalf("%q accepted", s)
		}
		if again, ok := parseUnknownException(fmt.Sprintf("unknown exception code (%v)", code)); !ok || again != code {
			t.Fatalf("%q: code %d does not round-trip", s, code)
		}
	})
}

func TestPDUs(t *testing.T) {
	read := rtu.Request{Slave: 1, Function: 3, Address: 0x0102, Quantity: 2}
	single := rtu.Request{Slave: 1, Function: 6, Address: 10, Quantity: 1, Data: []byte{0, 50}}
	multi := rtu.Request{Slave: 1, Function: 16, Address: 10, Quantity: 2, Data: []byte{1, 2, 3, 4}}
	coils := rtu.Request{Slave: 1, Function: 15, Address: 3, Quantity: 10, Data: []byte{0xff, 0x01}}
	for _, tc := range []struct {
		got  []byte
		want string
	}{
		{appendRequestPDU(nil, &read), "0301020002"},
		{appendResponsePDU(nil, &read, []byte{0, 1, 0, 2}), "030400010002"},
		{appendRequestPDU(nil, &single), "06000a0032"},
		{appendResponsePDU(nil, &single, nil), "06000a0032"},
		{appendRequestPDU(nil, &multi), "10000a00020401020304"},
		{appendResponsePDU(nil, &multi, nil), "10000a0002"},
		{appendRequestPDU(nil, &coils), "0f0003000a02ff01"},
		{appendExceptionPDU(nil, &multi, 2), "9002"},
	} {
		if h := hex.EncodeToString(tc.got); h != tc.want {
			t.Errorf("pdu %s, want %s", h, tc.want)
		}
	}
	bits := []bool{true, false, true, true, false, false, false, false, true}
	packed := packBits(nil, bits)
	if hex.EncodeToString(packed) != "0d01" {
		t.Fatalf("packed %x", packed)
	}
	if got := unpackBits(nil, packed, len(bits)); fmt.Sprint(got) != fmt.Sprint(bits) {
		t.Fatalf("unpacked %v", got)
	}
	if got := registers(nil, []byte{0x12, 0x34, 0xab, 0xcd}); len(got) != 2 || got[0] != 0x1234 || got[1] != 0xabcd {
		t.Fatalf("registers %x", got)
	}
}

// TestStoppedPollerFailsQueuedCommands: commands still in the inbox when a
// poller ends are answered, and nothing is accepted afterwards.
func TestStoppedPollerFailsQueuedCommands(t *testing.T) {
	e := newEnv(t)
	cfg := loadConfig(t, testComsrv, meterTemplate, channelFile("x", "tcp://127.0.0.1:1"))
	plan, err := poll.CompileFor(cfg.ChannelList[0].T, false)
	if err != nil {
		t.Fatal(err)
	}
	p := New(cfg.ChannelList[0], plan, cfg, e.sink, e.rep, e.reg, e.log)
	if !p.Deliver(&contract.Command{ID: "1", Channel: "x", Point: "102", Value: "1"}) {
		t.Fatal("not delivered")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.Run(ctx)
	if o := e.rep.wait(t, "1"); o.Status != contract.Failed {
		t.Fatalf("queued command: %+v", o)
	}
	if p.Deliver(&contract.Command{ID: "2"}) {
		t.Fatal("a stopped poller accepted a command")
	}
	if e.reg.target("x") != nil {
		t.Fatal("still attached")
	}
}

// TestSilentConnectionIsReopened: a TCP peer that accepts but never answers
// is dropped after backoff_after+1 requests in a row without an answer.
func TestSilentConnectionIsReopened(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	defer func() {
		for {
			select {
			case c := <-accepted:
				_ = c.Close()
			default:
				return
			}
		}
	}()
	ch := channelFile("q", "tcp://"+ln.Addr().String()) + "timeout = \"100ms\"\n"
	cfg := loadConfig(t, testComsrv, meterTemplate, ch)
	startSet(t, e, cfg)
	status := keys.ChannelStatus("q")
	wait.For(t, 15*time.Second, "reconnect after silence", func() error {
		st := e.hgetall(t, status)
		return wait.Check(strings.HasPrefix(st["disconnect_reason"], "no answer to 4 requests") && atoi(st["connects"]) >= 2,
			"status %v", st)

	})
	if e.hget(t, keys.ChannelQuality("q"), "100") != "stale" {
		t.Error("points not stale on a silent connection")
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
