package modbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/control"
	"github.com/voltedge/voltedge/comsrv/poll"
	"github.com/voltedge/voltedge/comsrv/sink"
)

// Set runs the pollers of all Modbus channels (those with a url) of a
// configuration, and applies reloads: Sync starts, restarts and stops
// pollers so that exactly the given channels run. It is safe for concurrent
// use.
type Set struct {
	cfg  *config.Config
	sink *sink.Sink
	rep  control.Reporter
	reg  control.Registry
	log  *slog.Logger

	syncMu  sync.Mutex // serialises Sync and Stop
	mu      sync.Mutex // guards pollers and stopped
	pollers map[string]*Poller
	stopped bool
}

// ErrStopped is returned by Sync after Stop.
var ErrStopped = errors.New("modbus: set stopped")

// NewSet returns an empty set; cfg supplies the [modbus], [frames], [events]
// and dtu.status_interval settings of every poller it starts.
func NewSet(cfg *config.Config, sk *sink.Sink, rep control.Reporter, reg control.Registry, log *slog.Logger) *Set {
	return &Set{cfg: cfg, sink: sk, rep: rep, reg: reg, log: log, pollers: make(map[string]*Poller)}
}

// Sync makes the running pollers match channels: channels without a url are
// ignored; a new Modbus channel gets a poller; one whose fields or template
// content changed is restarted; pollers of channels no longer listed are
// stopped; the others keep running undisturbed. Pollers started here run
// until ctx is cancelled or Stop is called, so ctx must be the service's
// lifetime, not a request's. Plans are compiled before anything changes:
// when one fails, nothing is changed and the error is returned.
func (s *Set) Sync(ctx context.Context, channels []*config.Channel) (added, changed, removed int, err error) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return 0, 0, 0, ErrStopped
	}
	current := make(map[string]*Poller, len(s.pollers))
	for id, p := range s.pollers {
		current[id] = p
	}
	s.mu.Unlock()

	type start struct {
		ch   *config.Channel
		plan *poll.Plan
	}
	var starts []start
	var stops []*Poller
	want := make(map[string]bool, len(channels))
	plans := poll.NewCache()
	for _, ch := range channels {
		if ch.URL == "" {
			continue
		}
		if want[ch.ID] {
			return 0, 0, 0, fmt.Errorf("modbus channel %s is listed twice", ch.ID)
		}
		want[ch.ID] = true
		old := current[ch.ID]
		if old != nil && config.SameChannel(old.ch, ch) {
			continue
		}
		if ch.T == nil {
			return 0, 0, 0, fmt.Errorf("modbus channel %s has no template", ch.ID)
		}
		plan, err := plans.For(ch)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("modbus %w", err)
		}
		starts = append(starts, start{ch, plan})
		if old != nil {
			stops = append(stops, old)
			changed++
		} else {
			added++
		}
	}
	for id, p := range current {
		if !want[id] {
			stops = append(stops, p)
			removed++
		}
	}

	// A changed channel's old poller ends before its new one starts, so that
	// a device (or serial port) never has two masters.
	for _, p := range stops {
		p.Stop()
	}
	for _, p := range stops {
		<-p.Done()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range stops {
		if s.pollers[p.ch.ID] == p {
			delete(s.pollers, p.ch.ID)
		}
	}
	for _, st := range starts {
		p := New(st.ch, st.plan, s.cfg, s.sink, s.rep, s.reg, s.log)
		s.pollers[st.ch.ID] = p
		go p.Run(ctx)
	}
	if added+changed+removed > 0 {
		s.log.Info("modbus channels synced", "added", added, "changed", changed, "removed", removed, "running", len(s.pollers))
	}
	return added, changed, removed, nil
}

// Stop stops every poller and waits for them; Sync fails afterwards.
func (s *Set) Stop() {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	s.stopped = true
	ps := make([]*Poller, 0, len(s.pollers))
	for _, p := range s.pollers {
		ps = append(ps, p)
	}
	s.mu.Unlock()
	for _, p := range ps {
		p.Stop()
	}
	for _, p := range ps {
		<-p.Done()
	}
	s.mu.Lock()
	clear(s.pollers)
	s.mu.Unlock()
}

// Count is the number of Modbus channels running (0 for a nil Set).
func (s *Set) Count() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pollers)
}

// Online is the number of Modbus channels connected (0 for a nil Set).
func (s *Set) Online() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.pollers {
		if p.Online() {
			n++
		}
	}
	return n
}

// Poller returns the running poller of a channel, or nil.
func (s *Set) Poller(id string) *Poller {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pollers[id]
}
