package dtu

import (
	"strconv"
	"testing"
	"time"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/rtu"
	"github.com/voltedge/voltedge/internal/wait"
)

// TestHeartbeatInsideSplitAnswer: a DTU that sends an answer in two TCP
// pieces beats between them, after every byte of the answer in turn. With
// retries = 0 every poll still succeeds: no CRC error, no garbage, and each
// heartbeat is counted.
func TestHeartbeatInsideSplitAnswer(t *testing.T) {
	b := newBed(t, "")
	d := dial(t, b.addr, "DTU2\n")
	size := len(rtu.AppendResponse(nil, rtu.Request{Slave: 1, Function: rtu.ReadHoldingRegisters, Quantity: 4}, regs))
	for k := 1; k < size; k++ {
		r := d.mustRequest()
		resp := rtu.AppendResponse(nil, r, regs)
		d.send(resp[:k])
		time.Sleep(5 * time.Millisecond)
		d.send([]byte("www.usr.cn"))
		time.Sleep(5 * time.Millisecond)
		d.send(resp[k:])
	}
	want := strconv.Itoa(size - 1)
	wait.For(t, patience, "every split answer taken", func() error {
		return wait.Equal(b.hash(t, keys.ChannelStatus("c2"))["polls_ok"], want)
	})
	st := b.hash(t, keys.ChannelStatus("c2"))
	if st["crc_errors"] != "0" || st["garbage_bytes"] != "0" || st["timeouts"] != "0" || st["mismatches"] != "0" || st["heartbeats"] != want {
		t.Fatalf("status %v: want no crc error, garbage, timeout or mismatch and %s heartbeats", st, want)
	}
	if v := b.hash(t, keys.ChannelValues("c2"))["1"]; v != "220.5" {
		t.Fatalf("voltage %q", v)
	}
}
