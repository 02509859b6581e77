package dtu

import (
	"context"
	"time"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/poll"
	"github.com/voltedge/voltedge/internal/keys"
)

// registryInterval is how often the run-time device registry is read.
const registryInterval = 2 * time.Second

// maxRegistry bounds the devices taken from the registry.
const maxRegistry = 100000

// registry is the set of DTUs added at run time (keys.DeviceRegistry:
// registration id → template), served as channels whose id is the
// registration id. Channels of the configuration files take precedence.
type registry struct {
	byReg map[string]*config.Channel
	plans map[*config.Channel]*poll.Plan
}

// runRegistry reads the device registry every registryInterval until ctx ends.
func (s *Server) runRegistry(ctx context.Context) {
	t := time.NewTicker(registryInterval)
	defer t.Stop()
	for {
		s.readRegistry(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readRegistry applies the registry's current content: new devices are
// accepted from now on, removed or changed ones have their links closed.
func (s *Server) readRegistry(ctx context.Context) {
	m, err := s.client.Do(ctx, s.client.B().Hgetall().Key(keys.DeviceRegistry).Build()).AsStrMap()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("read device registry", "key", keys.DeviceRegistry, "err", err)
		}
		return
	}
	old := s.reg.Load()
	cat := s.cat.Load()
	next := &registry{byReg: map[string]*config.Channel{}, plans: map[*config.Channel]*poll.Plan{}}
	cache := poll.NewCache()
	var added []string
	for id, tpl := range m {
		if len(next.byReg) >= maxRegistry {
			break
		}
		t := s.cfg.TemplateByID[tpl]
		if !keys.ValidID(id) || t == nil || cat.byReg[id] != nil || cat.byID[id] != nil {
			continue // invalid, unknown template, or configured in the files (they win)
		}
		ch := &config.Channel{ID: id, Registration: id, Template: t.Name, Name: id, T: t}
		if old != nil {
			if prev := old.byReg[id]; prev != nil && prev.Template == ch.Template {
				ch = prev
			}
		}
		if old == nil || old.byReg[id] != ch {
			added = append(added, id)
		}
		p, err := cache.For(ch)
		if err != nil {
			s.log.Warn("device registry: compile template", "device", id, "template", tpl, "err", err)
			continue
		}
		next.byReg[id] = ch
		next.plans[ch] = p
	}
	s.reg.Store(next)
	if len(added) > 0 {
		s.sink.AddChannels(added...)
		s.log.Info("device registry: devices added", "count", len(added))
	}
	if old == nil {
		return
	}
	var gone []string
	for id := range old.byReg {
		if next.byReg[id] == nil && cat.byID[id] == nil {
			gone = append(gone, id)
		}
	}
	s.sink.RemoveChannels(gone...)
	var closing []*link
	s.mu.Lock()
	for id, ch := range old.byReg {
		if next.byReg[id] == ch {
			continue
		}
		if l := s.links[ch.ID]; l != nil && l.ch == ch {
			closing = append(closing, l)
		}
	}
	s.mu.Unlock()
	for _, l := range closing {
		l.reloaded.Store(true)
		_ = l.conn.Close()
	}
}
