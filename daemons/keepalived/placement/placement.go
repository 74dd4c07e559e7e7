// Package placement is openssi-keepalived's pure core: on which node a
// monitored application runs (its primary, its backups, the last node
// or the next one round robin, as nodes come and go) and when repeated
// failures move it to another node. It holds no goroutine, clock, socket
// or lock: every function takes what it needs, time included, as
// arguments.
package placement

import (
	"fmt"
	"slices"
	"time"
)

// Rule is how the next node is chosen when the application must start
// somewhere new.
type Rule int

// The placement rules.
const (
	// LastNode (the default): the application stays on the node it ran
	// on last as long as that node is UP and fit; otherwise it goes to
	// the first UP node of its list (the primary first). It never moves
	// back to the primary by itself: a move costs a restart.
	LastNode Rule = iota + 1
	// RoundRobin: it goes to the next UP node of its list after the one
	// it ran on last (wrapping around), so repeated failures spread it
	// over every node.
	RoundRobin
)

// ParseRule reads a rule by its name (last_node, round_robin; "" is
// last_node).
func ParseRule(s string) (Rule, error) {
	switch s {
	case "", "last_node":
		return LastNode, nil
	case "round_robin":
		return RoundRobin, nil
	}
	return 0, fmt.Errorf("placement: %q is not a placement rule: want last_node or round_robin", s)
}

func (r Rule) String() string {
	switch r {
	case LastNode:
		return "last_node"
	case RoundRobin:
		return "round_robin"
	}
	return fmt.Sprintf("Rule(%d)", int(r))
}

// Nodes returns the nodes an application may run on, in order of
// preference: its primary, then its backups; with no backup listed, any
// UP node after the primary, by number; with neither, every UP node by
// number.
func Nodes(primary uint32, backups []uint32, up map[uint32]bool) []uint32 {
	var out []uint32
	if primary != 0 {
		out = append(out, primary)
	}
	if len(backups) > 0 {
		for _, b := range backups {
			if b != 0 && !slices.Contains(out, b) {
				out = append(out, b)
			}
		}
		return out
	}
	var rest []uint32
	for n, ok := range up {
		if ok && n != primary {
			rest = append(rest, n)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// Choose returns the node the application should start on, 0 if none
// is fit: list is its Nodes, up the UP members, last the node it ran on
// last (0: never ran), unfit the nodes that must not be chosen (the
// node giving it up after repeated failures, nodes where it cannot run).
func Choose(rule Rule, list []uint32, up map[uint32]bool, last uint32, unfit map[uint32]bool) uint32 {
	fit := func(n uint32) bool { return n != 0 && up[n] && !unfit[n] }
	at := slices.Index(list, last)
	switch {
	case rule == LastNode && fit(last) && at >= 0:
		return last
	case rule == RoundRobin && at >= 0:
		for i := 1; i <= len(list); i++ {
			if n := list[(at+i)%len(list)]; fit(n) {
				return n
			}
		}
		return 0
	}
	for _, n := range list {
		if fit(n) {
			return n
		}
	}
	return 0
}

// Retry counts an application's failures on one node (its exits, the
// failures of its check) and says what to do about each: restart it in
// place after a short backoff, or give it up on this node once it has
// failed Retries times within Within.
type Retry struct {
	Retries int
	Within  time.Duration
	fails   []time.Time
}

// Verdict is what to do after a failure.
type Verdict struct {
	// GiveUp: Retries failures within Within; start it elsewhere.
	GiveUp bool
	// After is how long to wait before restarting it in place.
	After time.Duration
	// Count is how many failures fall within Within, this one included.
	Count int
}

// FirstBackoff and MaxBackoff bound the wait before an in-place restart:
// the first restart is immediate, the next ones wait FirstBackoff,
// doubling up to MaxBackoff, while failures keep coming within Within.
const (
	FirstBackoff = 100 * time.Millisecond
	MaxBackoff   = 5 * time.Second
)

// Failed records a failure at now and returns the verdict.
func (r *Retry) Failed(now time.Time) Verdict {
	r.fails = append(r.fails, now)
	cut := 0
	for cut < len(r.fails) && now.Sub(r.fails[cut]) >= r.Within {
		cut++
	}
	r.fails = r.fails[cut:]
	n := len(r.fails)
	if r.Retries > 0 && n >= r.Retries {
		return Verdict{GiveUp: true, Count: n}
	}
	var after time.Duration
	if n > 1 {
		after = FirstBackoff << min(n-2, 16)
		after = min(after, MaxBackoff)
	}
	return Verdict{After: after, Count: n}
}

// Reset forgets the failures (a fresh start: a move, a new declaration).
func (r *Retry) Reset() { r.fails = nil }
