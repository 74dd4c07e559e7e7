// Package recovery is bench/failover's arithmetic, pure: when a service
// answered again after a kill, read from a witness's polls; nearest-rank
// percentiles; each variant's figures by the kind of kill (was the dead
// node Consul's Raft leader or not); ratios against a base variant; and
// which kill the bench should make next. No clocks, sockets or goroutines:
// the bench's shell takes the times and hands them in.
package recovery

import (
	"github.com/openssi/openssi/bench/stats"
	"sort"
	"time"
)

// Poll is one GET of one node's service port by the witness.
type Poll struct {
	At   time.Time
	Node string // the node polled
	OK   bool   // answered 200
	Body string // what it answered: the name of the node serving
}

// answers reports whether p is the service answering from p.Node itself
// (the test service answers with its node's name).
func (p Poll) answers() bool { return p.OK && p.Body == p.Node }

// FirstAnswer returns the earliest poll at or after since in which a node
// other than not answered with its own name; false when none did.
func FirstAnswer(polls []Poll, since time.Time, not string) (Poll, bool) {
	var best Poll
	found := false
	for _, p := range polls {
		if !p.answers() || p.Node == not || p.At.Before(since) {
			continue
		}
		if !found || p.At.Before(best.At) {
			best, found = p, true
		}
	}
	return best, found
}

// Holders lists, sorted, the nodes that answered with their own name in
// polls.
func Holders(polls []Poll) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range polls {
		if p.answers() && !seen[p.Node] {
			seen[p.Node] = true
			out = append(out, p.Node)
		}
	}
	sort.Strings(out)
	return out
}

// Kill is one measured recovery of one variant: its service ran on the
// node that was killed (or, for a crash, its process was).
type Kill struct {
	Variant string
	// Leader: the dead node was Consul's Raft leader.
	Leader bool
	// D is the time from the SIGKILL to the first answer from another
	// node (from the same node, for a crash).
	D time.Duration
	// Lost: no answer came within the bench's timeout; D is then the
	// timeout and the kill counts in Lost, not in the percentiles.
	Lost bool
}

// Class selects kills by the kind of victim.
type Class int

const (
	// NotLeader is a kill of a node that was not Consul's Raft leader.
	NotLeader Class = iota
	// Leader is a kill of Consul's Raft leader.
	Leader
	// All is every kill.
	All
)

func (c Class) String() string {
	switch c {
	case NotLeader:
		return "not the Raft leader"
	case Leader:
		return "the Raft leader"
	default:
		return "any node"
	}
}

func (c Class) has(k Kill) bool {
	return c == All || (c == Leader) == k.Leader
}

// Figures are one variant's recoveries of one class.
type Figures struct {
	Variant  string
	Class    Class
	N        int // recoveries measured (Lost excluded)
	Lost     int
	P50, P99 time.Duration
	Max      time.Duration
}

// Summarize returns the figures of variant's kills of class c.
func Summarize(kills []Kill, variant string, c Class) Figures {
	f := Figures{Variant: variant, Class: c}
	var ds []time.Duration
	for _, k := range kills {
		if k.Variant != variant || !c.has(k) {
			continue
		}
		if k.Lost {
			f.Lost++
			continue
		}
		ds = append(ds, k.D)
		if k.D > f.Max {
			f.Max = k.D
		}
	}
	f.N = len(ds)
	f.P50, f.P99 = stats.Percentile(ds, 50), stats.Percentile(ds, 99)
	return f
}

// Ratio is peer / base: how many times longer the peer took; 0 when
// either is missing.
func Ratio(peer, base time.Duration) float64 {
	if peer <= 0 || base <= 0 {
		return 0
	}
	return float64(peer) / float64(base)
}

// Faster reports whether base beats every peer at both percentiles (its
// p50 under the peer's p50 and its p99 under the peer's p99) with no lost
// recovery of its own. A peer that never recovered is beaten by any
// measured base; base without a sample beats none.
func Faster(base Figures, peers []Figures) bool {
	if base.N == 0 || base.Lost > 0 {
		return false
	}
	for _, p := range peers {
		if p.N == 0 {
			if p.Lost == 0 {
				return false // not measured
			}
			continue
		}
		if base.P50 >= p.P50 || base.P99 >= p.P99 {
			return false
		}
	}
	return true
}

// Within reports whether f meets a p99 target: measured, nothing lost,
// and its p99 at most limit.
func Within(f Figures, limit time.Duration) bool {
	return f.N > 0 && f.Lost == 0 && f.P99 <= limit
}

// Cell is one quota of the plan: kills of a variant's node, the Raft
// leader or not.
type Cell struct {
	Variant string
	Leader  bool
}

// Quota is how many kills each variant wants of each kind.
type Quota struct {
	NotLeader, Leader int
}

// Next returns the cell that misses the most kills (ties: the variants'
// order, not-leader first), given the kills so far; false when every
// quota is met. A kill counts in its own cell whatever the plan asked,
// and a lost recovery counts as a kill.
func Next(variants []string, q Quota, kills []Kill) (Cell, bool) {
	have := map[Cell]int{}
	for _, k := range kills {
		have[Cell{k.Variant, k.Leader}]++
	}
	var best Cell
	most := 0
	for _, v := range variants {
		for _, leader := range []bool{false, true} {
			want := q.NotLeader
			if leader {
				want = q.Leader
			}
			c := Cell{v, leader}
			if miss := want - have[c]; miss > most {
				best, most = c, miss
			}
		}
	}
	return best, most > 0
}
