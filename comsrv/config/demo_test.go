package config

import (
	"testing"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/mappings"
)

// TestDemoMatchesComsrvConfig checks that every channel point the demo
// mapping names exists in the demo channels' templates.
func TestDemoMatchesComsrvConfig(t *testing.T) {
	s, err := mappings.Load("../../config/mappings/demo.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Load("../../config/comsrv.toml")
	if err != nil {
		t.Fatal(err)
	}
	points := map[string]bool{}
	for _, ch := range cfg.ChannelList {
		if ch.T == nil {
			continue // a line device: not polled
		}
		for _, p := range ch.T.Points {
			points[keys.PointRef(ch.ID, p.ID)] = true
		}
	}
	for src := range s.Forward {
		if !points[src] {
			t.Errorf("forward mapping of %s: no such channel point", src)
		}
	}
	for ctl, dst := range s.Reverse {
		if !points[dst] {
			t.Errorf("control %s targets %s: no such channel point", ctl, dst)
		}
	}
}
