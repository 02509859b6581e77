package trim

import (
	"context"
	"testing"

	"github.com/voltedge/voltedge/internal/redistest"
)

// TestAckedKeepsWhatAnyGroupNeeds: with two groups, only entries both have
// acknowledged go; an entry read but not acknowledged stays.
func TestAckedKeepsWhatAnyGroupNeeds(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	const s = "data:test"
	if r, err := Acked(ctx, c, s); err != nil || r.Trimmed != 0 {
		t.Fatalf("missing stream: %+v %v", r, err)
	}
	for _, id := range []string{"1-1", "2-1", "3-1", "4-1"} {
		redistest.Do(t, c, "XADD", s, id, "n", id)
	}
	if r, err := Acked(ctx, c, s); err != nil || r.Trimmed != 0 || r.Groups != 0 {
		t.Fatalf("no groups: %+v %v, want nothing trimmed", r, err)
	}
	redistest.Do(t, c, "XGROUP", "CREATE", s, "netsrv", "0")
	redistest.Do(t, c, "XGROUP", "CREATE", s, "alarmsrv", "0")
	// netsrv reads 3 and acknowledges 1 and 2 (3 stays pending); alarmsrv reads and acknowledges all four.
	redistest.Do(t, c, "XREADGROUP", "GROUP", "netsrv", "n1", "COUNT", "3", "STREAMS", s, ">")
	redistest.Do(t, c, "XACK", s, "netsrv", "1-1", "2-1")
	redistest.Do(t, c, "XREADGROUP", "GROUP", "alarmsrv", "a1", "STREAMS", s, ">")
	redistest.Do(t, c, "XACK", s, "alarmsrv", "1-1", "2-1", "3-1", "4-1")
	r, err := Acked(ctx, c, s)
	if err != nil || r.MinID != "3-1" || r.Trimmed != 2 || r.Groups != 2 {
		t.Fatalf("got %+v %v, want 1-1 and 2-1 trimmed, 3-1 kept (pending in netsrv)", r, err)
	}
	redistest.Do(t, c, "XACK", s, "netsrv", "3-1")
	// netsrv has nothing pending but has not been delivered 4-1 yet.
	if r, err = Acked(ctx, c, s); err != nil || r.MinID != "3-2" || r.Trimmed != 1 {
		t.Fatalf("got %+v %v, want 3-1 trimmed and 4-1 kept (undelivered to netsrv)", r, err)
	}
	if n, _ := redistest.Do(t, c, "XLEN", s).AsInt64(); n != 1 {
		t.Fatalf("XLEN %d, want 1", n)
	}
}
