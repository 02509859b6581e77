package poll

import (
	"strings"
	"testing"

	"github.com/voltedge/voltedge/internal/rtu"
)

// FuzzPlanWrite: any control value, for any point, either is refused or
// gives requests the RTU master accepts, and never panics.
func FuzzPlanWrite(f *testing.F) {
	plans := [2]*Plan{writePlan(f, false), writePlan(f, true)}
	ids := make([]string, 0, len(plans[0].targets)+1)
	for _, tg := range plans[0].targets {
		ids = append(ids, tg.id)
	}
	ids = append(ids, "missing")
	for _, v := range []string{"0", "1", "-1", "220.5", "65535", "65536", "1e308", "1e309", "-0", "1.5e-7",
		"9223372036854775807", "18446744073709551616", "abc", "", "-", "1e", "0.1e+2"} {
		f.Add(uint8(0), v, []byte{0x12, 0x34})
	}
	// A value just too long is in the baseline, so that longer ones are
	// not new and never have to be minimized byte by byte.
	f.Add(uint8(1), strings.Repeat("9", MaxValueLen+1), []byte(nil))
	f.Add(uint8(1), strings.Repeat("9", 2*MaxValueLen+1), []byte(nil))
	f.Add(uint8(16), "1", []byte{0xff})
	f.Add(uint8(11), "-9223372036854775809", []byte(nil))
	f.Fuzz(func(t *testing.T, which uint8, value string, read []byte) {
		if len(value) > 2*MaxValueLen || len(read) > 8 {
			return // longer inputs take the paths the seeds take
		}
		p := plans[which>>7]
		id := ids[int(which&0x7f)%len(ids)]
		w, err := p.Write(id, value)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := w.Req.Validate(); err != nil {
			t.Fatalf("Write(%s, %q) = %+v: %v", id, value, w.Req, err)
		}
		if !w.ReadFirst {
			if !rtu.IsWrite(w.Req.Function) {
				t.Fatalf("Write(%s, %q) = %+v is no write", id, value, w.Req)
			}
			return
		}
		r, err := w.Complete(read)
		if err != nil {
			if len(read) == 2 {
				t.Fatalf("Complete(% x): %v", read, err)
			}
			return
		}
		if _, err := rtu.AppendRequest(nil, r); err != nil || r.Function != rtu.WriteSingleRegister && r.Function != rtu.WriteMultipleRegisters {
			t.Fatalf("Complete(% x) = %+v: %v", read, r, err)
		}
	})
}
