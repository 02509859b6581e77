// Package health tracks the slaves behind one link: after a number of
// consecutive timeouts a slave is skipped for a cool-down, so that a dead
// device does not eat the link's time, and its values are marked stale until
// it answers again.
package health

import "time"

// slave is the state of one slave id.
type slave struct {
	id    uint8
	fails int
	until time.Time // cool-down end
	down  bool      // went into cool-down and has not answered since
	stale bool      // values are marked stale in Redis
}

// Slaves is the health of the slaves of one link. It is owned by the link's
// goroutine and not safe for concurrent use. It holds state only for slaves
// it has seen, so a link with one slave costs a few dozen bytes.
type Slaves struct {
	after    int
	cooldown time.Duration
	s        []slave
}

// New tracks slaves that are skipped for cooldown after `after` consecutive timeouts.
func New(after int, cooldown time.Duration) *Slaves {
	if after < 1 {
		after = 1
	}
	return &Slaves{after: after, cooldown: cooldown}
}

func (h *Slaves) get(id uint8) *slave {
	for i := range h.s {
		if h.s[i].id == id {
			return &h.s[i]
		}
	}
	h.s = append(h.s, slave{id: id})
	return &h.s[len(h.s)-1]
}

// MarkAllStale records that the values of the given slaves are marked stale
// (a link that starts after being offline); the next answer of each reports a recovery.
func (h *Slaves) MarkAllStale(ids []uint8) {
	for _, id := range ids {
		h.get(id).stale = true
	}
}

// Skip reports whether slave id is cooling down at now.
func (h *Slaves) Skip(id uint8, now time.Time) bool {
	for i := range h.s {
		if h.s[i].id == id {
			return now.Before(h.s[i].until)
		}
	}
	return false
}

// Timeout records a timed-out request to slave id. It reports true when the
// slave has just become unreachable and its values must be marked stale.
// A slave that times out again right after its cool-down goes straight back
// into cool-down.
func (h *Slaves) Timeout(id uint8, now time.Time) (becameStale bool) {
	s := h.get(id)
	s.fails++
	if s.fails < h.after && !s.down {
		return false
	}
	s.down = true
	s.until = now.Add(h.cooldown)
	if s.stale {
		return false
	}
	s.stale = true
	return true
}

// OK records an answer (a response or an exception) from slave id. It
// reports true when the slave's values were marked stale and are good again.
func (h *Slaves) OK(id uint8) (recovered bool) {
	for i := range h.s {
		if h.s[i].id == id {
			s := &h.s[i]
			s.fails = 0
			s.until = time.Time{}
			s.down = false
			if s.stale {
				s.stale = false
				return true
			}
			return false
		}
	}
	return false
}

// Stale reports whether slave id's values are marked stale.
func (h *Slaves) Stale(id uint8) bool {
	for i := range h.s {
		if h.s[i].id == id {
			return h.s[i].stale
		}
	}
	return false
}

// Unreachable lists the slaves in cool-down at now (for status hashes).
func (h *Slaves) Unreachable(now time.Time) []uint8 {
	var out []uint8
	for i := range h.s {
		if now.Before(h.s[i].until) {
			out = append(out, h.s[i].id)
		}
	}
	return out
}
