package level

import "github.com/openssi/openssi/daemons/vprocd/load"

// Steady smooths this node's own load vector for Decide. A run queue is
// the tasks runnable at one instant, and a task that wakes then (a daemon's
// timer, a thread waiting for a CPU on a crowded node) counts too. Only
// this node's processes move, so a spike in its own count would move a
// process for nothing, and the imbalance that move makes would bring one
// back later; a spike in a peer's only holds moves back. Steady gives the
// latest of the last two readings (one each period) with the lesser run
// queue of the two: a rise must be seen twice, a period apart, to move
// anything, while a fall (a process moved away, or ended) counts at once.
// The lesser is compared as Decide compares them (Tasks).
// Not safe for concurrent use.
type Steady struct {
	prev, last load.Vector
	n          int
}

// Add takes this period's reading of this node's vector and returns the
// one to decide with.
func (s *Steady) Add(v load.Vector) load.Vector {
	switch {
	case s.n > 0 && v.At.Equal(s.last.At):
		// The same reading again: no new one since the last period.
	default:
		s.prev, s.last = s.last, v
		s.n = min(s.n+1, 2)
	}
	out := s.last
	if s.n == 2 {
		out.RunQueue = min(s.prev.RunQueue, s.last.RunQueue)
		if s.prev.Tasks() < s.last.Tasks() {
			out.RunQueueAvg = s.prev.Tasks()
		}
	}
	return out
}
