package channel

import (
	"time"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/poll"
)

// schedule is a channel's poll schedule: the queue of tasks waiting to be
// sent, in the order they became due, and when each timer task runs next.
// A task is queued at most once.
type schedule struct {
	id    string
	tasks []poll.Task
	timed []bool      // task runs on its interval (timers; heartbeat tasks without heartbeats)
	next  []time.Time // per timed task: next run
	queue []int
	inQ   []bool
	beats bool
}

func (s *schedule) init(id string, plan *poll.Plan) {
	n := len(plan.Tasks)
	s.id, s.tasks = id, plan.Tasks
	s.timed = make([]bool, n)
	s.next = make([]time.Time, n)
	s.inQ = make([]bool, n)
	s.queue = make([]int, 0, n)
}

// start begins a connection: the queue empties, timer tasks are phased over
// their interval from now (so that links do not poll in lockstep) and
// connect tasks are queued.
func (s *schedule) start(now time.Time, beats bool) {
	s.beats = beats
	for _, i := range s.queue {
		s.inQ[i] = false
	}
	s.queue = s.queue[:0]
	for i := range s.tasks {
		t := &s.tasks[i]
		s.timed[i] = t.Trigger == poll.Timer || (t.Trigger == poll.Heartbeat && !beats)
		if s.timed[i] {
			s.next[i] = now.Add(poll.Phase(s.id, i, interval(t)))
		}
		if t.Trigger == poll.Connect {
			s.push(i)
		}
	}
}

// interval is a task's period; heartbeat-triggered tasks on a transport
// without heartbeats run on their interval, or the default one.
func interval(t *poll.Task) time.Duration {
	if t.Interval > 0 {
		return t.Interval
	}
	return config.DefaultTaskInterval
}

// due queues the timed tasks due at now and returns when the next one is.
// A task that fell behind runs once and then one interval from now: no
// burst of catch-up polls.
func (s *schedule) due(now time.Time) time.Time {
	wake := now.Add(time.Hour)
	for i := range s.tasks {
		if !s.timed[i] {
			continue
		}
		if !now.Before(s.next[i]) {
			s.push(i)
			iv := interval(&s.tasks[i])
			s.next[i] = s.next[i].Add(iv)
			if s.next[i].Before(now) {
				s.next[i] = now.Add(iv)
			}
		}
		if s.next[i].Before(wake) {
			wake = s.next[i]
		}
	}
	return wake
}

// heartbeat queues the heartbeat-triggered tasks.
func (s *schedule) heartbeat() {
	if !s.beats {
		return
	}
	for i := range s.tasks {
		if s.tasks[i].Trigger == poll.Heartbeat {
			s.push(i)
		}
	}
}

func (s *schedule) push(i int) {
	if s.inQ[i] {
		return
	}
	s.inQ[i] = true
	s.queue = append(s.queue, i)
}

func (s *schedule) pop() (int, bool) {
	if len(s.queue) == 0 {
		return 0, false
	}
	i := s.queue[0]
	copy(s.queue, s.queue[1:])
	s.queue = s.queue[:len(s.queue)-1]
	s.inQ[i] = false
	return i, true
}

func (s *schedule) queued() bool { return len(s.queue) > 0 }
