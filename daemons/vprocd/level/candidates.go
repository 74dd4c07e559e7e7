package level

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/load"
)

// Sample is one reading of a process, to measure its load.
type Sample struct {
	// PID is its pid on this node and Start its start time (clock ticks
	// after boot, /proc/<pid>/stat): a process that took the pid since
	// has another Start.
	PID   int32
	Start uint64
	// Busy is the time its tasks ran or waited for a CPU
	// (/proc/<pid>/task/*/schedstat, fields 1 and 2), so that its load is
	// what it adds to the run queue, the unit of the nodes' loads; where
	// the kernel keeps no schedstat, its CPU time.
	Busy time.Duration
	// At is when it was read (a monotonic reading).
	At time.Time
}

// Rate is a process's load from two samples of it: its busy time between
// them over the time between them, in runnable tasks. ok is false when
// they are not of the same process or not in order.
func Rate(prev, cur Sample) (l float64, ok bool) {
	dt := cur.At.Sub(prev.At)
	if prev.PID != cur.PID || prev.Start != cur.Start || dt <= 0 || cur.Busy < prev.Busy {
		return 0, false
	}
	return float64(cur.Busy-prev.Busy) / float64(dt), true
}

// Candidate is a process started through vprocd that runs on this node,
// as the shell finds it each period.
type Candidate struct {
	ID cpid.CPID
	// Registered: its program is registered for load leveling (not
	// looked at when NotMovable is set).
	Registered bool
	// NotMovable is why it cannot move now ("" when it can): not started
	// migratable, its checkpoint link not up, its origin gone.
	NotMovable string
	// Sample is its reading this period; Sampled is false when it could
	// not be read (it is then not considered).
	Sample  Sample
	Sampled bool
	// Load, when not negative, is its load given outright (the shell's
	// test seam) in place of the samples'.
	Load float64
}

// Skipped counts the candidates a period left out, by reason.
type Skipped struct {
	Unregistered, NotMovable, Measuring, Failed int
}

// String says what was left out ("" when nothing was).
func (s Skipped) String() string {
	var parts []string
	for _, p := range []struct {
		n    int
		what string
	}{
		{s.Unregistered, "not registered for load leveling"},
		{s.NotMovable, "not movable now"},
		{s.Measuring, "first measured this period"},
		{s.Failed, "failed to move within the cool-down"},
	} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
		}
	}
	return strings.Join(parts, ", ")
}

type moveRec struct {
	at       time.Time
	from, to uint32
	load     float64
}

// Tracker turns each period's candidates into Decide's Procs. It keeps
// the last sample of each process (a load needs two), the moves from and
// to this node (their LastMove and From: the cool-down, and the vectors
// that do not show them yet), and the moves that failed (that process is
// not tried again within the cool-down). Pure, not safe for concurrent
// use.
type Tracker struct {
	self     uint32
	coolDown time.Duration
	keep     time.Duration
	samples  map[cpid.CPID]Sample
	moves    map[cpid.CPID]moveRec
	failed   map[cpid.CPID]time.Time
}

// NewTracker returns the Tracker of node self; coolDown is Config's (0:
// the default).
func NewTracker(self uint32, coolDown time.Duration) *Tracker {
	if coolDown <= 0 {
		coolDown = DefaultCoolDown
	}
	return &Tracker{self: self, coolDown: coolDown, keep: max(coolDown, load.DefaultMaxAge),
		samples: map[cpid.CPID]Sample{}, moves: map[cpid.CPID]moveRec{}, failed: map[cpid.CPID]time.Time{}}
}

// Moved records that x, of load l, moved from node from to node to at
// at: a move this node made (from is self) or one that brought x here (to
// is self; l unknown, 0).
func (t *Tracker) Moved(x cpid.CPID, from, to uint32, at time.Time, l float64) {
	t.moves[x] = moveRec{at: at, from: from, to: to, load: l}
	delete(t.samples, x)
	delete(t.failed, x)
}

// Failed records that a move of x failed at at: it runs on here and is
// not tried again within the cool-down.
func (t *Tracker) Failed(x cpid.CPID, at time.Time) { t.failed[x] = at }

// Procs takes this period's candidates (every process started through
// vprocd that runs here) at now and returns the Procs of Decide: the
// registered, movable ones with a load, and those this node moved away
// recently (on their new node, for the staleness correction; never
// candidates there). skipped counts those left out.
func (t *Tracker) Procs(now time.Time, cands []Candidate) (procs []Proc, skipped Skipped) {
	here := map[cpid.CPID]bool{}
	samples := map[cpid.CPID]Sample{}
	for _, c := range cands {
		here[c.ID] = true
		var prev Sample
		var had bool
		if c.Sampled {
			prev, had = t.samples[c.ID]
			samples[c.ID] = c.Sample
		}
		switch {
		case c.NotMovable != "":
			skipped.NotMovable++
			continue
		case !c.Registered:
			skipped.Unregistered++
			continue
		}
		if at, ok := t.failed[c.ID]; ok && now.Sub(at) < t.coolDown {
			skipped.Failed++
			continue
		}
		l := c.Load
		if l < 0 || math.IsNaN(l) {
			var ok bool
			if l, ok = 0, had && c.Sampled; ok {
				l, ok = Rate(prev, c.Sample)
			}
			if !ok {
				skipped.Measuring++
				continue
			}
		}
		p := Proc{ID: c.ID, Node: t.self, Load: l}
		if m, ok := t.moves[c.ID]; ok && m.to == t.self && now.Sub(m.at) < t.keep {
			p.LastMove, p.From = m.at, m.from
		}
		procs = append(procs, p)
	}
	t.samples = samples
	for x, m := range t.moves {
		switch {
		case now.Sub(m.at) >= t.keep:
			delete(t.moves, x)
		case m.from == t.self && m.to != t.self && !here[x]:
			procs = append(procs, Proc{ID: x, Node: m.to, From: t.self, Load: m.load, LastMove: m.at})
		}
	}
	for x, at := range t.failed {
		if now.Sub(at) >= t.coolDown || !here[x] {
			delete(t.failed, x)
		}
	}
	slices.SortFunc(procs, func(a, b Proc) int { return cmp.Compare(a.ID, b.ID) })
	return procs, skipped
}
