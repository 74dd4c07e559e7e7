package migrate

import "slices"

// Status is one move this node takes part in, for `ssi ps -o migrate`
// and `ssi status`.
type Status struct {
	Move Move
	// Role is "source", "target" or "arbiter".
	Role string
	// State: source "freezing", "confirming", "deciding commit",
	// "deciding abort", "thawing"; target "restoring", "confirmed";
	// arbiter "querying", "commit" or "abort".
	State string
}

// Moves lists the moves in progress here, and the decisions this node
// recorded as an arbiter, ordered by move.
func (n *Node) Moves() []Status {
	var out []Status
	for _, id := range sortedIDs(n.sources) {
		s := n.sources[id]
		st := map[srcState]string{srcFreezing: "freezing", srcSent: "confirming", srcThawing: "thawing"}[s.state]
		if s.state == srcDeciding {
			st = "deciding " + s.want.String()
		}
		out = append(out, Status{Move: s.move, Role: "source", State: st})
	}
	for _, id := range sortedIDs(n.targets) {
		t := n.targets[id]
		st := "restoring"
		if t.state == tgtConfirmed {
			st = "confirmed"
		}
		out = append(out, Status{Move: t.move, Role: "target", State: st})
	}
	for _, id := range sortedIDs(n.arbs) {
		a := n.arbs[id]
		st := "querying"
		if a.outcome != Undecided {
			st = a.outcome.String()
		}
		out = append(out, Status{Move: a.move, Role: "arbiter", State: st})
	}
	slices.SortStableFunc(out, func(a, b Status) int { return cmpID(a.Move.ID, b.Move.ID) })
	return out
}
