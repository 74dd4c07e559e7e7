package initnode

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/client/initnode/runlevel"
	"github.com/openssi/openssi/daemons/initfailover/initfailoverspec"
	initfailoverv1 "github.com/openssi/openssi/proto/initfailover/v1"
)

// ErrStopped is wrapped by an IsolateError once a node has changed: the
// run level change stopped part way.
var ErrStopped = errors.New("stopped")

// Membership is where Isolate reads the membership view (a
// *cluster.Client).
type Membership interface {
	Nodes(ctx context.Context) (cluster.View, error)
}

// IsolateOptions tune Isolate. The zero value is the default.
type IsolateOptions struct {
	// Force isolates a target that does not pull in openssi.target and
	// basic.target (initfailoverspec.IsolateKeeps). Such a node leaves
	// the cluster: Isolate then stops there, as the node is not UP again.
	Force bool
	// DryRun checks the target on every node and reports the order,
	// changing nothing.
	DryRun bool
	// Settle is how long a node must be seen UP without a break after
	// its isolate (default 3s); Timeout bounds a node's isolate job, its
	// return to UP and a hand-over of the init role (default 5 minutes,
	// at most initfailoverspec.MaxIsolateTimeout);
	// Poll is how often the membership and the init node are read
	// (default 250ms).
	Settle, Timeout, Poll time.Duration
	// Progress, if set, is told each step as it starts and ends.
	Progress func(Progress)
}

// ProgressKind is the kind of a Progress report.
type ProgressKind int

// The progress reports, in the order they come.
const (
	// Planned: the target passed its checks on every node; Order is the
	// order, Skipped the nodes not UP, Majority the nodes that must stay UP.
	Planned ProgressKind = iota + 1
	// Isolating: Node's isolate job starts.
	Isolating
	// Isolated: Node's job ended (Took), Unit the target's states there.
	Isolated
	// Back: Node is UP again and settled (Took since its job ended).
	Back
	// Moving: the init role moves from Node to To.
	Moving
	// Moved: To is the init node now (Took).
	Moved
	// Finished: every node of the order is at the target.
	Finished
)

// Progress is one step of Isolate.
type Progress struct {
	Kind     ProgressKind
	Target   string
	Node, To int
	// Init is the init node when the change was planned (0: none).
	Init     int
	Order    []int
	Skipped  []int
	Members  int
	Majority int
	Took     time.Duration
	Unit     Unit
}

func (p Progress) String() string {
	switch p.Kind {
	case Planned:
		s := fmt.Sprintf("%s: nodes %s in turn", p.Target, runlevel.Nodes(p.Order))
		if p.Init != 0 && slices.Contains(p.Order, p.Init) {
			s += fmt.Sprintf(" (node %d is init: its role moves to a node already at the target first)", p.Init)
		}
		s += fmt.Sprintf("; at least %d of the %d nodes stay UP at every step", p.Majority, p.Members)
		if len(p.Skipped) > 0 {
			s += fmt.Sprintf("; skipped, not UP: %s", runlevel.Nodes(p.Skipped))
		}
		return s
	case Isolating:
		return fmt.Sprintf("node %d: isolating %s", p.Node, p.Target)
	case Isolated:
		return fmt.Sprintf("node %d: at %s (%s) in %s", p.Node, p.Target, p.Unit.ActiveState, p.Took.Round(10*time.Millisecond))
	case Back:
		return fmt.Sprintf("node %d: UP in the membership (%s after its isolate)", p.Node, p.Took.Round(10*time.Millisecond))
	case Moving:
		return fmt.Sprintf("init role: moving from node %d to node %d, already at %s", p.Node, p.To, p.Target)
	case Moved:
		return fmt.Sprintf("init role: node %d is the init node (%s)", p.To, p.Took.Round(10*time.Millisecond))
	case Finished:
		return fmt.Sprintf("%s: every node (%s) is at it", p.Target, runlevel.Nodes(p.Order))
	}
	return fmt.Sprintf("Progress(%d)", int(p.Kind))
}

// IsolateError says why Isolate stopped, and where.
type IsolateError struct {
	Target string
	// Node is the node where it stopped (0: refused before any node).
	Node int
	// Done are the nodes at the target (none when refused).
	Done []int
	// Skipped are nodes not UP at the start, not moved.
	Skipped []int
	Why     string
	err     error
}

func (e *IsolateError) Error() string {
	switch {
	case e.Node == 0 && len(e.Done) == 0 && len(e.Skipped) == 0:
		return fmt.Sprintf("isolate %s: refused, no node changed: %s", e.Target, e.Why)
	case e.Node == 0:
		return fmt.Sprintf("isolate %s: %s", e.Target, e.Why)
	}
	done := "no node moved"
	if len(e.Done) > 0 {
		done = "nodes " + runlevel.Nodes(e.Done) + " moved"
	}
	return fmt.Sprintf("isolate %s: stopped at node %d (%s): %s", e.Target, e.Node, done, e.Why)
}

func (e *IsolateError) Unwrap() error { return e.err }

// Isolate moves the cluster to a run level: every UP node to target (a
// systemd target with AllowIsolate=yes, which must pull in openssi.target
// and basic.target unless o.Force), one node at a time, keeping a
// majority of the cluster's nodes UP (package runlevel has the rules).
// The target is checked on every node before any changes. Root only.
// The run holds lock (DLMRunLock) from its checks to its end and is
// refused while another run holds it; a dry run does not take it (nil
// will do). Errors are an *IsolateError (wrapping ErrRefused before any
// node moved, else ErrStopped), or the package's errors.
func (c *Client) Isolate(ctx context.Context, target string, m Membership, lock RunLock, o IsolateOptions) error {
	if o.Settle == 0 {
		o.Settle = 3 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Poll == 0 {
		o.Poll = 250 * time.Millisecond
	}
	report := func(p Progress) {
		p.Target = target
		if o.Progress != nil {
			o.Progress(p)
		}
	}
	refuse := func(why string) error { return &IsolateError{Target: target, Why: why, err: ErrRefused} }
	if err := initfailoverspec.CheckIsolateTarget(target); err != nil {
		return refuse(strings.TrimPrefix(err.Error(), "initfailover: "))
	}
	if o.Timeout < 0 || o.Timeout > initfailoverspec.MaxIsolateTimeout {
		return refuse(fmt.Sprintf("timeout %s: want at most %s", o.Timeout, initfailoverspec.MaxIsolateTimeout))
	}
	var held Held
	if !o.DryRun {
		if lock == nil {
			return refuse("no run lock to keep runs apart")
		}
		var err error
		if held, err = lock.TryLock(ctx); err != nil {
			return refuse(err.Error())
		}
		defer held.Release()
	}
	members, self, err := view(ctx, m)
	if err != nil {
		return err
	}
	var upNodes []uint32
	for _, mb := range members {
		if mb.Up {
			upNodes = append(upNodes, uint32(mb.Node))
		}
	}
	lines, err := c.service(ctx, &initfailoverv1.ServiceRequest{Action: initfailoverv1.Action_ACTION_ISOLATE, Unit: target,
		Nodes: upNodes, Check: true, Force: o.Force})
	if err != nil {
		return err
	}
	if why := refusals(lines); why != "" {
		return refuse(why)
	}
	info, err := c.Init(ctx)
	if err != nil {
		return err
	}
	order, skipped := runlevel.Order(members, info.Node, self)
	if s := runlevel.Next(order, nil, members, info.Node); s.Kind == runlevel.Stop {
		return refuse(s.Why)
	}
	report(Progress{Kind: Planned, Init: info.Node, Order: order, Skipped: skipped, Members: len(members), Majority: runlevel.Majority(len(members))})
	if o.DryRun {
		return nil
	}
	var done []int
	stop := func(node int, why string) error {
		return &IsolateError{Target: target, Node: node, Done: slices.Clone(done), Skipped: skipped, Why: why, err: ErrStopped}
	}
	next := func() int { // the node an error before Next stops at
		for _, n := range order {
			if !slices.Contains(done, n) {
				return n
			}
		}
		return 0
	}
	for {
		if err := held.Err(); err != nil {
			return stop(next(), fmt.Sprintf("lost the isolate lock, another run may start: %v", err))
		}
		if members, _, err = view(ctx, m); err != nil {
			return stop(next(), err.Error())
		}
		// The init node now: the role may have moved since the plan.
		if info, err = c.Init(ctx); err != nil {
			return stop(next(), err.Error())
		}
		s := runlevel.Next(order, done, members, info.Node)
		switch s.Kind {
		case runlevel.Done:
			report(Progress{Kind: Finished, Order: order})
			if len(skipped) > 0 {
				return &IsolateError{Target: target, Done: done, Skipped: skipped, err: ErrStopped,
					Why: fmt.Sprintf("nodes %s moved; node(s) %s were not UP and are not at it", runlevel.Nodes(done), runlevel.Nodes(skipped))}
			}
			return nil
		case runlevel.Stop:
			return stop(s.Node, s.Why)
		case runlevel.Move:
			report(Progress{Kind: Moving, Node: s.Node, To: s.To})
			t0 := time.Now()
			if _, err := c.Move(ctx, s.To); err != nil {
				return stop(s.Node, fmt.Sprintf("hand the init role to node %d: %v", s.To, err))
			}
			if err := c.awaitInit(ctx, s.To, o); err != nil {
				return stop(s.Node, err.Error())
			}
			report(Progress{Kind: Moved, Node: s.Node, To: s.To, Took: time.Since(t0)})
		case runlevel.Isolate:
			report(Progress{Kind: Isolating, Node: s.Node})
			t0 := time.Now()
			// initfailover bounds the job by o.Timeout and says so; the
			// call's own deadline is a little later, for a node that does
			// not answer.
			jctx, cancel := context.WithTimeout(ctx, o.Timeout+isolateGrace)
			lines, err := c.service(jctx, &initfailoverv1.ServiceRequest{Action: initfailoverv1.Action_ACTION_ISOLATE, Unit: target,
				Nodes: []uint32{uint32(s.Node)}, Force: o.Force, TimeoutNanos: int64(o.Timeout)})
			late := errors.Is(jctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
			cancel()
			switch {
			case err != nil && late:
				return stop(s.Node, fmt.Sprintf("node %d did not reach %s within %s; check `systemctl list-jobs` there, or raise --timeout", s.Node, target, o.Timeout))
			case err != nil:
				return stop(s.Node, err.Error())
			case len(lines) != 1:
				return stop(s.Node, fmt.Sprintf("initfailover answered %d lines for one node", len(lines)))
			case lines[0].Err != "":
				return stop(s.Node, lines[0].Err)
			}
			ended := time.Now()
			report(Progress{Kind: Isolated, Node: s.Node, Took: ended.Sub(t0), Unit: lines[0]})
			if err := awaitBack(ctx, m, s.Node, ended, o); err != nil {
				return stop(s.Node, err.Error())
			}
			done = append(done, s.Node)
			report(Progress{Kind: Back, Node: s.Node, Took: time.Since(ended)})
		}
	}
}

// isolateGrace is how much longer than the job's timeout an isolate
// call may take before Isolate stops waiting for the node's answer.
const isolateGrace = 15 * time.Second

// awaitBack polls the membership until node is UP and settled, or gone.
func awaitBack(ctx context.Context, m Membership, node int, ended time.Time, o IsolateOptions) error {
	r := &runlevel.Return{Node: node, Start: ended, Settle: o.Settle, Timeout: o.Timeout, Final: o.Force}
	for {
		members, _, err := view(ctx, m)
		if err != nil {
			return err
		}
		switch r.See(time.Now(), members) {
		case runlevel.Back:
			return nil
		case runlevel.Gone:
			return errors.New(r.Why())
		}
		if err := sleep(ctx, o.Poll); err != nil {
			return err
		}
	}
}

// awaitInit polls the init node until it is node.
func (c *Client) awaitInit(ctx context.Context, node int, o IsolateOptions) error {
	deadline := time.Now().Add(o.Timeout)
	for {
		i, err := c.Init(ctx)
		if err == nil && i.Node == node {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("node %d did not become the init node within %s: %w", node, o.Timeout, err)
			}
			return fmt.Errorf("node %d did not become the init node within %s (init node: %d)", node, o.Timeout, i.Node)
		}
		if err := sleep(ctx, o.Poll); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// view reads the membership: the nodes UP or DOWN (a node that left
// gracefully is no longer one), and this node. A node without Consul
// quorum cannot tell, and refuses.
func view(ctx context.Context, m Membership) ([]runlevel.Member, int, error) {
	v, err := m.Nodes(ctx)
	if err != nil {
		return nil, 0, err
	}
	if !v.Quorum {
		return nil, 0, errors.New("initnode: this node cannot reach a Consul quorum: its membership view may be stale")
	}
	var out []runlevel.Member
	for _, n := range v.Nodes {
		if n.State == cluster.Up || n.State == cluster.Down {
			out = append(out, runlevel.Member{Node: n.Number, Up: n.State == cluster.Up})
		}
	}
	return out, v.ThisNode, nil
}

// refusals renders the lines of a check that failed on one line: each
// reason once, with the nodes it holds on ("" none failed).
func refusals(lines []Unit) string {
	var whys []string
	on := map[string][]int{}
	for _, l := range lines {
		if l.Err == "" {
			continue
		}
		if _, ok := on[l.Err]; !ok {
			whys = append(whys, l.Err)
		}
		on[l.Err] = append(on[l.Err], l.Node)
	}
	parts := make([]string, len(whys))
	for i, w := range whys {
		nodes := on[w]
		word := "node"
		if len(nodes) > 1 {
			word = "nodes"
		}
		parts[i] = fmt.Sprintf("%s %s: %s", word, runlevel.Nodes(nodes), w)
	}
	return strings.Join(parts, "; ")
}
