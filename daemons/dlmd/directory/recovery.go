package directory

import (
	"fmt"
	"slices"
)

// ID names one recovery: the membership epoch it is for, and a round that
// grows when the recovery is run again at the same epoch (a member's dlmd
// restarted). IDs are ordered by epoch, then round.
type ID struct {
	Epoch uint64
	Round uint32
}

// Less orders IDs.
func (a ID) Less(b ID) bool {
	return a.Epoch < b.Epoch || a.Epoch == b.Epoch && a.Round < b.Round
}

// String renders the ID as epoch.round.
func (a ID) String() string { return fmt.Sprintf("%d.%d", a.Epoch, a.Round) }

// Completed is a recovery a node finished: its ID and the members (with
// their incarnations) of the directory it installed.
type Completed struct {
	ID      ID
	Members map[NodeID]uint64
}

// Nodes returns the members, sorted.
func (c Completed) Nodes() []NodeID {
	out := make([]NodeID, 0, len(c.Members))
	for n := range c.Members {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Report is what a member says of itself at the barrier.
type Report struct {
	Node        NodeID
	Incarnation uint64
	// Last is its last completed recovery; HasLast is false for a dlmd
	// that never completed one (it then holds no lock and masters
	// nothing: requests wait for the first recovery).
	Last    ID
	HasLast bool
	// Era is the highest Plan.Era the member computed before this
	// recovery (0: none), as its dlmd remembers it.
	Era uint64
}

// Plan is what a recovery does, the same on every member.
type Plan struct {
	// Full: the members do not agree on the old directory; every resource
	// moves and every master rebuilds from copies.
	Full bool
	// Old is the directory of the last completed recovery (when not Full).
	Old []NodeID
	// New is the directory being installed.
	New []NodeID
	// Agreed is the last completed recovery of the members that have one
	// (when not Full).
	Agreed ID
	// Lost are the old members whose locks are gone: down, left, or whose
	// dlmd restarted (a new incarnation); and those that never completed
	// the agreed recovery (they hold no lock and master nothing).
	Lost []NodeID
	// Installed is what the recovery records as completed.
	Installed Completed
	// Era is the fencing-token era of the recovery: above the era of
	// every recovery before it whose plan a member computed, and at least
	// EraOf(ID). Every master that starts mastering a resource under this
	// recovery grants tokens above Era<<32 (see daemons/dlmd/node).
	Era uint64
	// completed are the members whose report has the agreed recovery as
	// their last.
	completed map[NodeID]bool
}

// MakePlan computes the plan of recovery id from every member's report
// (one per member of the new directory; self included). last is the
// completed recovery of the node computing it, but the result depends only
// on the reports, so every member computes the same plan.
func MakePlan(id ID, reports []Report) Plan {
	p := Plan{Installed: Completed{ID: id, Members: map[NodeID]uint64{}}, Era: EraOf(id)}
	for _, r := range reports {
		p.New = append(p.New, r.Node)
		p.Installed.Members[r.Node] = r.Incarnation
		if r.Era >= p.Era {
			p.Era = r.Era + 1
		}
	}
	p.New = Sorted(p.New)
	// The old directory: the last completed recovery, agreed by every
	// member that completed one. Members that never did (a new node, a
	// restarted dlmd) hold nothing, so they do not vote. When nobody has
	// one (the cluster's first recovery), there is nothing to move.
	var agreed *ID
	for _, r := range reports {
		if !r.HasLast {
			continue
		}
		if agreed == nil {
			l := r.Last
			agreed = &l
		} else if *agreed != r.Last {
			p.Full = true
			break
		}
	}
	if agreed != nil && !p.Full {
		p.Agreed = *agreed
		p.completed = map[NodeID]bool{}
		for _, r := range reports {
			if r.HasLast && r.Last == p.Agreed {
				p.completed[r.Node] = true
			}
		}
	}
	return p
}

// EraOf is the least fencing-token era of recovery id: epoch<<8 | round
// (rounds past 255 count as 255). Membership epochs only grow, so do the
// rounds of an epoch; MakePlan also goes above the eras the members
// report, which keeps eras growing when the rounds of an epoch start again
// (every dlmd fenced and rejoining at round 0).
func EraOf(id ID) uint64 {
	return id.Epoch<<8 | uint64(min(id.Round, 255))
}

// WithOld completes a plan that is not Full with the old directory: the
// members of the agreed last recovery, as the computing node recorded them
// when it completed that recovery (ok false: it has no record). A node
// whose record is not the agreed one never completed it, so it holds
// nothing and needs no old directory: it sends no copies and keeps no
// tables.
func (p Plan) WithOld(last Completed, ok bool) Plan {
	if p.Full || !ok || last.ID != p.Agreed {
		return p
	}
	p.Old = last.Nodes()
	for _, n := range p.Old {
		// A member of the agreed recovery that never completed it (a
		// recovery that started before it could rebuild what moved to
		// it) masters nothing of what the others think it does: its
		// resources move too.
		inc, still := p.Installed.Members[n]
		if !still || inc != last.Members[n] || !p.completed[n] {
			p.Lost = append(p.Lost, n)
		}
	}
	return p
}

// Moves reports whether a resource mastered on master before the recovery
// changes master: when the plan is Full, or its master is lost (master 0:
// not known). Its copies then go to NewMaster, which rebuilds it. A
// resource whose master stays keeps it, whoever joins.
func (p Plan) Moves(master NodeID) bool {
	if p.Full || len(p.Old) == 0 || master == 0 {
		return true
	}
	return slices.Contains(p.Lost, master) || !slices.Contains(p.New, master)
}

// NewMaster is the master of a moving resource after the recovery: the
// rendezvous-hash winner among the new members, on which every member
// agrees without asking.
func (p Plan) NewMaster(lockspace, resource string) NodeID {
	return Master(p.New, lockspace, resource)
}

// Barrier follows one recovery's two waits: the marker acknowledgements
// from every member (after which this node's copies are exact) and the
// "copies done" from every member (after which its masters can rebuild).
type Barrier struct {
	ID      ID
	Members []NodeID
	acks    map[NodeID]Report
	done    map[NodeID]bool
}

// NewBarrier starts the barrier of recovery id over members.
func NewBarrier(id ID, members []NodeID) *Barrier {
	return &Barrier{ID: id, Members: Sorted(members), acks: map[NodeID]Report{}, done: map[NodeID]bool{}}
}

// Ack records a member's acknowledgement; reports from non-members are
// ignored. It returns true once every member has acknowledged.
func (b *Barrier) Ack(r Report) bool {
	if slices.Contains(b.Members, r.Node) {
		b.acks[r.Node] = r
	}
	return b.Acked()
}

// Acked reports whether every member acknowledged.
func (b *Barrier) Acked() bool { return len(b.acks) == len(b.Members) }

// Reports returns the acknowledgements in node order.
func (b *Barrier) Reports() []Report {
	out := make([]Report, 0, len(b.acks))
	for _, n := range b.Members {
		if r, ok := b.acks[n]; ok {
			out = append(out, r)
		}
	}
	return out
}

// Missing returns the members that have not acknowledged yet.
func (b *Barrier) Missing() []NodeID {
	var out []NodeID
	for _, n := range b.Members {
		if _, ok := b.acks[n]; !ok {
			out = append(out, n)
		}
	}
	return out
}

// CopiesDone records that a member sent all its copies; it returns true
// once every member has.
func (b *Barrier) CopiesDone(n NodeID) bool {
	if slices.Contains(b.Members, n) {
		b.done[n] = true
	}
	return len(b.done) == len(b.Members)
}

// Members tracks the UP members of the membership, epoch by epoch, from a
// view and the events that follow it.
type Members struct {
	Epoch uint64
	Up    map[NodeID]bool
}

// Apply applies one membership event (up true for NODEUP, false for
// NODEDOWN and NODELEAVE) at epoch; events at or below the current epoch
// are ignored. It returns whether the set changed epoch.
func (m *Members) Apply(epoch uint64, node NodeID, up bool) bool {
	if epoch <= m.Epoch {
		return false
	}
	if m.Up == nil {
		m.Up = map[NodeID]bool{}
	}
	m.Epoch = epoch
	if up {
		m.Up[node] = true
	} else {
		delete(m.Up, node)
	}
	return true
}

// List returns the UP members, sorted.
func (m *Members) List() []NodeID {
	out := make([]NodeID, 0, len(m.Up))
	for n := range m.Up {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
