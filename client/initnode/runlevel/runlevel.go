// Package runlevel holds the decisions of a clusterwide run level change
// (`ssi isolate TARGET`): the order in which the nodes move to the
// target, the majority rule, when to go on, hand the init role over, or
// stop. It is a pure core: no clock, no socket, no goroutine; the shell
// (initnode.Client.Isolate) asks the nodes and carries the steps out.
//
// The rules:
//   - The nodes UP at the start move, one at a time, by number, then the
//     init node, then the node the change is driven from (Order). Before
//     the init node moves, its role is handed to a node already at the
//     target, so the singleton services move once. Nodes not UP at the
//     start are skipped (and reported).
//   - A node moves only if the other UP nodes are a majority of the
//     cluster's nodes (UP or DOWN; a node that left gracefully does not
//     count), so that even if the isolate took it out, a majority stays.
//   - After its isolate job, the next node waits until the node is UP in
//     the membership view and has stayed UP for a settling time; a node
//     not UP again within the timeout stops the change there, and so,
//     at once, does a node seen DOWN or LEFT after a forced isolate (a
//     target that does not keep it in the cluster: it will not return).
package runlevel

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Member is a node of the cluster as the membership view shows it; a
// node that left gracefully is not one.
type Member struct {
	Node int
	Up   bool
}

// Majority is the smallest number of nodes that is more than half of n.
func Majority(n int) int { return n/2 + 1 }

// Order returns the nodes to move, in order: the UP members by number,
// then init (the init node, 0: none), then self (the node the change is
// driven from, 0: none): the init node goes late so that its role moves
// once, to a node already at the target; self goes last so that if the
// isolate of its own node stopped the driver, only that node was left
// to move. It also returns the members skipped because they are not UP.
func Order(members []Member, init, self int) (order, skipped []int) {
	for _, m := range sorted(members) {
		switch {
		case !m.Up:
			skipped = append(skipped, m.Node)
		case m.Node != init && m.Node != self:
			order = append(order, m.Node)
		}
	}
	if init != self && up(members, init) {
		order = append(order, init)
	}
	if up(members, self) {
		order = append(order, self)
	}
	return order, skipped
}

// Kind is the kind of a Step.
type Kind int

// The steps.
const (
	// Isolate: move Node to the target.
	Isolate Kind = iota + 1
	// Move: hand the init role from Node to To (a node at the target)
	// before Node moves.
	Move
	// Done: every node of the order is at the target.
	Done
	// Stop: do nothing more; Node is where it stopped, Why says why.
	Stop
)

// Step is what to do next.
type Step struct {
	Kind Kind
	Node int
	To   int
	Why  string
}

func (s Step) String() string {
	switch s.Kind {
	case Isolate:
		return fmt.Sprintf("isolate node %d", s.Node)
	case Move:
		return fmt.Sprintf("move init from node %d to node %d", s.Node, s.To)
	case Done:
		return "done"
	case Stop:
		return fmt.Sprintf("stop at node %d: %s", s.Node, s.Why)
	}
	return fmt.Sprintf("Step(%d)", int(s.Kind))
}

// Next decides the next step: order is Order's, done the nodes at the
// target so far, members the latest view and init the init node now (0:
// none).
func Next(order, done []int, members []Member, init int) Step {
	var rest []int
	for _, n := range order {
		if !slices.Contains(done, n) {
			rest = append(rest, n)
		}
	}
	if len(rest) == 0 {
		return Step{Kind: Done}
	}
	n := rest[0]
	if n == init && doneUp(done, members) == 0 && len(rest) > 1 {
		// The role moved since the order was made, to a node before
		// any is at the target: let the next one go first.
		n = rest[1]
	}
	if !up(members, n) {
		return Step{Kind: Stop, Node: n, Why: fmt.Sprintf("node %d is not UP", n)}
	}
	total, others := 0, 0
	for _, m := range members {
		total++
		if m.Up && m.Node != n {
			others++
		}
	}
	if need := Majority(total); others < need {
		return Step{Kind: Stop, Node: n, Why: fmt.Sprintf("only %d of the cluster's %d nodes would stay UP while node %d moves, fewer than a majority (%d)",
			others, total, n, need)}
	}
	if n == init {
		if to := doneUp(done, members); to != 0 {
			return Step{Kind: Move, Node: n, To: to}
		}
		return Step{Kind: Stop, Node: n, Why: fmt.Sprintf("node %d is the init node and no node already at the target is UP to take the role", n)}
	}
	return Step{Kind: Isolate, Node: n}
}

// Verdict is what Back decides.
type Verdict int

// The verdicts.
const (
	// Wait: look at the membership again.
	Wait Verdict = iota + 1
	// Back: the node is UP and settled; go on.
	Back
	// Gone: the node is not UP again in time; stop there.
	Gone
)

// Return follows one node back into the membership after its isolate
// job ended (at Start).
type Return struct {
	Node  int
	Start time.Time
	// Settle is how long the node must be seen UP without a break;
	// Timeout how long after Start it may take.
	Settle, Timeout time.Duration
	// Final: a node seen DOWN or gone from the view is not coming back
	// (a forced target that does not keep it in the cluster): Gone at
	// once rather than after Timeout.
	Final bool

	upSince time.Time
	// out is how the node was last seen not UP ("" it was not):
	// "DOWN", or "LEFT" when gone from the view.
	out string
}

// See takes a view seen at now and says whether the node is back.
func (r *Return) See(now time.Time, members []Member) Verdict {
	r.out = ""
	switch {
	case !up(members, r.Node):
		r.upSince = time.Time{}
		r.out = "LEFT"
		if slices.ContainsFunc(members, func(m Member) bool { return m.Node == r.Node }) {
			r.out = "DOWN"
		}
		if r.Final {
			return Gone
		}
	case r.upSince.IsZero():
		r.upSince = now
	}
	if !r.upSince.IsZero() && now.Sub(r.upSince) >= r.Settle {
		return Back
	}
	if now.Sub(r.Start) >= r.Timeout {
		return Gone
	}
	return Wait
}

// Why says, after Gone, what the node failed to do.
func (r *Return) Why() string {
	if r.Final && r.out != "" {
		return fmt.Sprintf("node %d is %s in the membership after its isolate: the forced target took it out of the cluster, and it will not come back by itself", r.Node, r.out)
	}
	return fmt.Sprintf("node %d is not UP in the membership %s after its isolate (stayed UP less than %s)", r.Node, r.Timeout, r.Settle)
}

// Nodes renders a list of nodes: "2, 3, 1".
func Nodes(nodes []int) string {
	s := make([]string, len(nodes))
	for i, n := range nodes {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

// doneUp returns the first node done that is UP (0: none).
func doneUp(done []int, members []Member) int {
	for _, d := range done {
		if up(members, d) {
			return d
		}
	}
	return 0
}

func up(members []Member, n int) bool {
	for _, m := range members {
		if m.Node == n {
			return m.Up
		}
	}
	return false
}

func sorted(members []Member) []Member {
	s := slices.Clone(members)
	slices.SortFunc(s, func(a, b Member) int { return a.Node - b.Node })
	return s
}
