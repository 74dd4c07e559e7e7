package node

import (
	"maps"
	"slices"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// Cross-node deadlocks: the coordinator (the lowest member, see
// Coordinator) merges every master's wait-for edges (Edges), finds the
// victims (the same on any node) and has their masters refuse them
// (Victims). The shell fetches the edges and hands the victims over.
//
// The masters' edges are read one after the other, and an unlock and the
// owner's next request may reach different masters in either order: the
// merged graph can show a cycle that never existed (an owner seen holding
// what it has already released). Only the edges seen in two consecutive
// rounds count: the requests on them kept waiting for the same owners for
// a whole interval, as in a real deadlock.

// EdgeSet is the wait-for edges one round of detection saw.
type EdgeSet map[lsEdge]bool

// lsEdge is a wait-for edge of a lockspace.
type lsEdge struct {
	ls string
	e  lockspace.Edge
}

// DeadlockRound runs a round of detection on every master's edges (all),
// counting only those also seen in the round before (prev): it returns
// the edges it saw, for the next round, and the victims to refuse.
func DeadlockRound(prev EdgeSet, all []*dlmpeerv1.Edge) (seen EdgeSet, victims []*dlmpeerv1.Edge) {
	seen = make(EdgeSet, len(all))
	by := map[string][]lockspace.Edge{}
	for _, e := range all {
		ls, le := EdgeFromProto(e)
		k := lsEdge{ls, le}
		seen[k] = true
		if prev[k] {
			by[ls] = append(by[ls], le)
		}
	}
	for _, ls := range slices.Sorted(maps.Keys(by)) {
		for _, w := range lockspace.FindVictims(by[ls]) {
			victims = append(victims, EdgeToProto(ls, lockspace.Edge{Waiter: w}))
		}
	}
	return seen, victims
}
