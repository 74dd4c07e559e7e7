package load

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Vector is one node's load as it measured it.
type Vector struct {
	Node uint32
	// RunQueue is the tasks runnable at the measurement (procs_running,
	// not counting the measuring process); in a container, whose kernel
	// is shared, the node's own tasks' average since the previous
	// measurement (AverageRunQueue, rounded), or where the kernel keeps
	// no schedstat their count in state R.
	RunQueue uint32
	// RunQueueAvg is that average unrounded, where the node measured one
	// (0 otherwise: a count at an instant, or a peer older than it).
	// Placement and the leveler compare it (Tasks): an idle node's
	// daemons average a fraction of a task that wavers around a half
	// (0.3 to 0.8 in the lab), which rounding turns into a whole task
	// that comes and goes.
	RunQueueAvg float64
	// Load1 is the 1-minute load average (shown; placement uses Tasks,
	// which follows short jobs within a second where Load1 lags).
	Load1 float64
	// CPUs online, at least 1.
	CPUs uint32
	// FreeMem is the memory available, in bytes (MemAvailable).
	FreeMem uint64
	// At is when it was measured, by the measuring node's clock.
	At time.Time
}

// Tasks is the run queue placement and the leveler compare: RunQueueAvg
// where the vector has it, else RunQueue.
func (v Vector) Tasks() float64 {
	if v.RunQueueAvg > 0 {
		return v.RunQueueAvg
	}
	return float64(v.RunQueue)
}

// PerCPU is the run queue (Tasks) per CPU.
func (v Vector) PerCPU() float64 { return v.Tasks() / float64(max(v.CPUs, 1)) }

// Defaults of Config.
const (
	DefaultSize   = 8
	DefaultMaxAge = 8 * time.Second
	DefaultMargin = 0.25
	DefaultSettle = 5 * time.Second
)

// Config is what a Window needs.
type Config struct {
	// Self is this node's number.
	Self uint32
	// Size is how many peers' vectors the window keeps (default 8): the
	// freshest heard.
	Size int
	// MaxAge: a vector heard longer ago is expired (default 8s).
	MaxAge time.Duration
	// Margin is the stability margin of placement, in runnable tasks per
	// CPU (default 0.25): another node is preferred over the current
	// choice only when its score is lower by more than Margin.
	Margin float64
	// Settle bounds how long a placement counts as in flight on its node
	// when no newer vector of that node is heard (default 5s).
	Settle time.Duration
	// MinFree, when not 0, keeps placement off nodes with less free
	// memory, unless every candidate has less.
	MinFree uint64
}

// Rand is the random source the exchange picks peers with: *rand.Rand of
// math/rand/v2 (seeded by the shell, fixed in tests).
type Rand interface{ IntN(n int) int }

type entry struct {
	v     Vector
	heard time.Time // local clock
}

type placement struct {
	node uint32
	at   time.Time
}

// Window is one vprocd's view of the cluster's load: its own latest
// vector, the freshest vectors heard from at most Size peers, the UP
// members, and its recent placements. Not safe for concurrent use.
type Window struct {
	cfg     Config
	self    Vector
	selfSet bool
	selfAt  time.Time // local clock of the last Measured
	peers   map[uint32]entry
	up      map[uint32]bool
	placed  []placement
	current uint32
}

// New returns an empty Window.
func New(cfg Config) *Window {
	if cfg.Size <= 0 {
		cfg.Size = DefaultSize
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Margin < 0 || math.IsNaN(cfg.Margin) {
		cfg.Margin = 0
	} else if cfg.Margin == 0 {
		cfg.Margin = DefaultMargin
	}
	if cfg.Settle <= 0 {
		cfg.Settle = DefaultSettle
	}
	return &Window{cfg: cfg, peers: map[uint32]entry{}, up: map[uint32]bool{}}
}

// Members sets the UP nodes (a full view, e.g. at start); vectors and
// placements of nodes not in it are dropped.
func (w *Window) Members(up []uint32) {
	w.up = map[uint32]bool{}
	for _, n := range up {
		w.up[n] = true
	}
	for n := range w.peers {
		if !w.up[n] {
			w.forget(n)
		}
	}
}

// Membership applies one membership change: a node DOWN loses its vector
// and placements at once.
func (w *Window) Membership(node uint32, up bool) {
	if up {
		w.up[node] = true
		return
	}
	delete(w.up, node)
	w.forget(node)
}

func (w *Window) forget(node uint32) {
	delete(w.peers, node)
	w.placed = slices.DeleteFunc(w.placed, func(p placement) bool { return p.node == node })
	if w.current == node {
		w.current = 0
	}
}

// Measured records this node's own vector, measured at now.
func (w *Window) Measured(now time.Time, v Vector) {
	v.Node = w.cfg.Self
	v.CPUs = max(v.CPUs, 1)
	w.self, w.selfSet, w.selfAt = v, true, now
}

// Heard takes a vector a peer sent, heard at now. It returns an error for
// a vector that cannot be right (the shell logs it, rate-limited) and
// ignores one from a node not UP, from itself, or older than the one it
// has of that node. When the window is full, the entry heard longest ago
// makes room.
func (w *Window) Heard(now time.Time, v Vector) error {
	switch {
	case v.Node == 0:
		return errors.New("load: a vector of node 0")
	case v.CPUs == 0:
		return fmt.Errorf("load: node %d's vector has no CPU", v.Node)
	case math.IsNaN(v.Load1) || v.Load1 < 0 || v.Load1 > maxLoad:
		return fmt.Errorf("load: node %d's vector has load average %v", v.Node, v.Load1)
	case math.IsNaN(v.RunQueueAvg) || v.RunQueueAvg < 0 || v.RunQueueAvg > maxLoad:
		return fmt.Errorf("load: node %d's vector has average run queue %v", v.Node, v.RunQueueAvg)
	case v.Node == w.cfg.Self || !w.up[v.Node]:
		return nil
	}
	w.expire(now)
	if old, ok := w.peers[v.Node]; ok {
		if !v.At.After(old.v.At) {
			return nil
		}
	} else if len(w.peers) >= w.cfg.Size {
		var oldest uint32
		for n, e := range w.peers {
			if oldest == 0 || e.heard.Before(w.peers[oldest].heard) || (e.heard.Equal(w.peers[oldest].heard) && n < oldest) {
				oldest = n
			}
		}
		delete(w.peers, oldest)
	}
	w.peers[v.Node] = entry{v: v, heard: now}
	return nil
}

// expire drops the vectors heard more than MaxAge ago and the placements
// older than Settle.
func (w *Window) expire(now time.Time) {
	for n, e := range w.peers {
		if now.Sub(e.heard) > w.cfg.MaxAge {
			delete(w.peers, n)
		}
	}
	w.placed = slices.DeleteFunc(w.placed, func(p placement) bool { return now.Sub(p.at) > w.cfg.Settle })
}

// Tick is the exchange, once a second: it expires old vectors and returns
// the peer to send this node's latest vector to, chosen uniformly at
// random among the UP nodes but itself; ok is false when there is no such
// peer or no vector measured yet.
func (w *Window) Tick(now time.Time, r Rand) (to uint32, v Vector, ok bool) {
	w.expire(now)
	if !w.selfSet {
		return 0, Vector{}, false
	}
	peers := make([]uint32, 0, len(w.up))
	for n := range w.up {
		if n != w.cfg.Self {
			peers = append(peers, n)
		}
	}
	if len(peers) == 0 {
		return 0, Vector{}, false
	}
	slices.Sort(peers)
	return peers[r.IntN(len(peers))], w.self, true
}

// Entry is one line of what a node believes (`ssi nodes -o load`).
type Entry struct {
	Vector
	// Self: this node's own measurement.
	Self bool
	// Heard is when this node measured (Self) or heard it, by its clock.
	Heard time.Time
	// InFlight counts this node's placements on it not yet seen in a
	// vector.
	InFlight int
	// Score is the placement score: (Tasks()+InFlight)/CPUs.
	Score float64
}

// Vectors returns the node's own vector and the window, by node number.
func (w *Window) Vectors(now time.Time) []Entry {
	w.expire(now)
	var out []Entry
	if w.selfSet {
		out = append(out, w.entry(w.self, w.selfAt, true))
	}
	for _, e := range w.peers {
		out = append(out, w.entry(e.v, e.heard, false))
	}
	slices.SortFunc(out, func(a, b Entry) int { return int(a.Node) - int(b.Node) })
	return out
}

func (w *Window) entry(v Vector, heard time.Time, self bool) Entry {
	in := 0
	for _, p := range w.placed {
		if p.node == v.Node && !p.at.Before(heard) {
			in++
		}
	}
	return Entry{Vector: v, Self: self, Heard: heard, InFlight: in, Score: (v.Tasks() + float64(in)) / float64(max(v.CPUs, 1))}
}

// ErrNoNode: no candidate to place on.
var ErrNoNode = errors.New("load: no node to place on (no load vector of an UP node)")

// Place chooses the node for one new process and counts it in flight
// there. The candidates are this node (once measured) and the window's
// nodes, those allowed (nil: all) and, when MinFree is set, with that much
// free memory if any has. Each candidate's score is
//
//	(Tasks + InFlight) / CPUs
//
// where InFlight counts this node's placements on it at or after the time
// its vector in use was heard (measured, for this node) and within Settle.
// The best candidate is the lowest score, a tie going to this node, then
// to the lowest node number. The choice is the previous choice (the
// current node) while it is still a candidate, unless the best is lower
// than it by more than Margin; otherwise the best. Each placement raises
// the chosen node's score by 1/CPUs, so two nodes within the margin take
// turns (in runs of at most 2*(floor(Margin*CPUs)+1): 2 at the default
// margin on up to 3 CPUs) instead of all work piling on one, load per CPU
// is balanced to within Margin plus one task per CPU, and a difference in
// measurements smaller than the margin does not move the choice.
func (w *Window) Place(now time.Time, allowed func(node uint32) bool) (uint32, error) {
	cands := w.Vectors(now)
	cands = slices.DeleteFunc(cands, func(e Entry) bool { return allowed != nil && !allowed(e.Node) })
	if w.cfg.MinFree > 0 && slices.ContainsFunc(cands, func(e Entry) bool { return e.FreeMem >= w.cfg.MinFree }) {
		cands = slices.DeleteFunc(cands, func(e Entry) bool { return e.FreeMem < w.cfg.MinFree })
	}
	if len(cands) == 0 {
		return 0, ErrNoNode
	}
	best, cur := -1, -1
	for i, e := range cands {
		if best < 0 || e.Score < cands[best].Score || (e.Score == cands[best].Score && e.Self && !cands[best].Self) {
			best = i
		}
		if e.Node == w.current {
			cur = i
		}
	}
	choice := best
	if cur >= 0 && !(cands[best].Score < cands[cur].Score-w.cfg.Margin) {
		choice = cur
	}
	node := cands[choice].Node
	w.current = node
	w.placed = append(w.placed, placement{node: node, at: now})
	if len(w.placed) > MaxInFlight {
		// A burst beyond any real one (a caller asking in a loop):
		// the oldest stop counting, so the window stays bounded.
		w.placed = slices.Delete(w.placed, 0, len(w.placed)-MaxInFlight)
	}
	return node, nil
}

// MaxInFlight bounds the placements a Window counts in flight: Place is
// open to every local user, and each placement is kept up to Settle.
const MaxInFlight = 4096
