package level

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/load"
)

// Defaults of Config.
const (
	// DefaultStability is Kerrighed's stability factor.
	DefaultStability = 1.3
	// DefaultCoolDown is how long a process that moved stays put.
	DefaultCoolDown = 20 * time.Second
	// DefaultMargin is how far above a peer, in runnable tasks per CPU, a
	// node must be to move anything: placement's margin.
	DefaultMargin = load.DefaultMargin
	// DefaultMinLoad is the least load, in runnable tasks, of a process
	// worth moving.
	DefaultMinLoad = 0.1
)

// Config tunes Decide; the zero value is the defaults.
type Config struct {
	// Stability (default 1.3) must be above 1; a value of 1 or less (or
	// NaN) is taken as the default, since the rule cannot keep from
	// thrashing without it.
	Stability float64
	// CoolDown (default 20s): a process that moved less long ago stays.
	CoolDown time.Duration
	// Margin (default 0.25): a node moves nothing to a peer less than
	// this much below it, per CPU.
	Margin float64
	// MinLoad (default 0.1): lighter processes are not moved.
	MinLoad float64
}

func (c Config) withDefaults() Config {
	if !(c.Stability > 1) || math.IsInf(c.Stability, 0) {
		c.Stability = DefaultStability
	}
	if c.CoolDown <= 0 {
		c.CoolDown = DefaultCoolDown
	}
	if !(c.Margin > 0) || math.IsInf(c.Margin, 0) {
		c.Margin = DefaultMargin
	}
	if !(c.MinLoad > 0) || math.IsInf(c.MinLoad, 0) {
		c.MinLoad = DefaultMinLoad
	}
	return c
}

// Proc is one registered process that can migrate (those that cannot, by
// either mechanism, are left out by the caller).
type Proc struct {
	ID cpid.CPID
	// Node is where it runs now.
	Node uint32
	// Load is the CPU it uses, in runnable tasks (1 for a busy thread).
	Load float64
	// LastMove is when it last arrived on Node by a migration (zero:
	// never moved), by the deciding node's clock.
	LastMove time.Time
	// From is the node it left then (0: never moved).
	From uint32
}

// Input is what one decision reads.
type Input struct {
	// Now is the deciding node's clock.
	Now time.Time
	// Self, when not 0, is the deciding node: only its processes move.
	// 0 is the global view: any node may be the source.
	Self uint32
	// Nodes are the load vectors of the nodes that may take part (UP,
	// heard recently): the deciding node's own and its window's. A
	// process on a node without a vector does not move.
	Nodes []load.Vector
	// Procs are the registered, migratable processes.
	Procs []Proc
}

// Decision is Decide's answer.
type Decision struct {
	// Move: migrate Proc from From to To. When false, only Reason is set
	// (and From, To name the pair it was about, when there was one).
	Move     bool
	Proc     cpid.CPID
	From, To uint32
	// ProcLoad is the process's load; FromLoad and ToLoad are the two
	// nodes' loads per CPU before the move, as Decide saw them.
	ProcLoad, FromLoad, ToLoad float64
	// Kind classifies Reason (the same Kind, between the same nodes,
	// is the same answer with other figures).
	Kind Kind
	// Reason says why, for `ssi loadlevel status`.
	Reason string
}

// Kind is what a Decision says, in a word.
type Kind string

// Kinds of Decision.
const (
	// KindMove: Move is set.
	KindMove Kind = "move"
	// KindBalanced: no node is above a peer by more than the margin.
	KindBalanced Kind = "balanced"
	// KindTooHeavy: the stability rule keeps every process that may move.
	KindTooHeavy Kind = "stability"
	// KindCoolDown: the processes that would matter moved too recently.
	KindCoolDown Kind = "cool-down"
	// KindNothing: no registered, migratable, busy process on the source.
	KindNothing Kind = "nothing-migratable"
	// KindNoLoad: too few load vectors to compare.
	KindNoLoad Kind = "no-load"
)

type node struct {
	v    load.Vector
	cpus float64
	rq   float64 // run queue corrected for moves the vector does not show
}

func (n node) x() float64 { return n.rq / n.cpus }

// Decide returns at most one migration that the rule (see the package
// documentation) allows, or none, with the reason either way. Its result
// depends only on its arguments; the order of Nodes and Procs does not
// matter.
func Decide(cfg Config, in Input) Decision {
	cfg = cfg.withDefaults()
	nodes := map[uint32]*node{}
	for _, v := range in.Nodes {
		if v.Node == 0 || nodes[v.Node] != nil {
			continue // a vector of no node, or a second one: the first counts
		}
		nodes[v.Node] = &node{v: v, cpus: float64(max(v.CPUs, 1)), rq: v.Tasks()}
	}
	procs := make([]Proc, 0, len(in.Procs))
	for _, p := range in.Procs {
		if math.IsNaN(p.Load) || math.IsInf(p.Load, 0) || p.Load < 0 {
			continue
		}
		procs = append(procs, p)
		if p.LastMove.IsZero() {
			continue
		}
		if n := nodes[p.Node]; n != nil && p.LastMove.After(n.v.At) {
			n.rq += p.Load
		}
		if n := nodes[p.From]; n != nil && p.From != p.Node && p.LastMove.After(n.v.At) {
			n.rq = max(n.rq-p.Load, 0)
		}
	}
	slices.SortFunc(procs, func(a, b Proc) int { return cmp.Compare(a.ID, b.ID) })
	if len(nodes) < 2 {
		return Decision{Kind: KindNoLoad, Reason: fmt.Sprintf("no move: %d node(s) with a load vector, need 2", len(nodes))}
	}
	order := make([]*node, 0, len(nodes))
	for _, n := range nodes {
		order = append(order, n)
	}
	// Least loaded first, then the lower node number.
	slices.SortFunc(order, func(a, b *node) int {
		if c := cmp.Compare(a.x(), b.x()); c != 0 {
			return c
		}
		return cmp.Compare(a.v.Node, b.v.Node)
	})
	var sources []*node
	if in.Self != 0 {
		n := nodes[in.Self]
		if n == nil {
			return Decision{Kind: KindNoLoad, Reason: fmt.Sprintf("no move: no load vector of this node (%d)", in.Self)}
		}
		sources = []*node{n}
	} else {
		sources = slices.Clone(order)
		// Most loaded first, then the lower node number.
		slices.SortFunc(sources, func(a, b *node) int {
			if c := cmp.Compare(b.x(), a.x()); c != 0 {
				return c
			}
			return cmp.Compare(a.v.Node, b.v.Node)
		})
	}
	var why *Decision // the reason of the first pair considered
	for _, a := range sources {
		for _, b := range order {
			if b == a || a.x()-b.x() <= cfg.Margin {
				continue
			}
			d := pick(cfg, in.Now, a, b, procs)
			if d.Move {
				return d
			}
			if why == nil {
				why = &d
			}
		}
	}
	if why != nil {
		return *why
	}
	hi, lo := sources[0], order[0]
	if lo == hi {
		lo = order[1]
	}
	d := Decision{From: hi.v.Node, To: lo.v.Node, FromLoad: hi.x(), ToLoad: lo.x(), Kind: KindBalanced}
	if in.Self != 0 {
		d.Reason = fmt.Sprintf("no move: this node (%d, %.2f per CPU) is not above its least loaded peer, node %d (%.2f), by more than the margin %.2f",
			hi.v.Node, hi.x(), lo.v.Node, lo.x(), cfg.Margin)
	} else {
		d.Reason = fmt.Sprintf("no move: balanced: the most loaded node %d (%.2f per CPU) is not above the least loaded, node %d (%.2f), by more than the margin %.2f",
			hi.v.Node, hi.x(), lo.v.Node, lo.x(), cfg.Margin)
	}
	return d
}

// pick chooses the process of a to move to b, if any may go.
func pick(cfg Config, now time.Time, a, b *node, procs []Proc) Decision {
	d := Decision{From: a.v.Node, To: b.v.Node, FromLoad: a.x(), ToLoad: b.x()}
	minCPUs := min(a.cpus, b.cpus)
	var on, light, cooling, heavy int
	var lightestHeavy Proc // the lightest process the stability rule keeps
	best, bestGap := -1, math.Inf(1)
	for i, p := range procs {
		if p.Node != a.v.Node {
			continue
		}
		on++
		switch {
		case p.Load < cfg.MinLoad:
			light++
			continue
		case !p.LastMove.IsZero() && now.Sub(p.LastMove) < cfg.CoolDown:
			cooling++
			continue
		case b.x()+cfg.Stability*p.Load/minCPUs >= a.x():
			if heavy == 0 || p.Load < lightestHeavy.Load {
				lightestHeavy = p
			}
			heavy++
			continue
		}
		gap := math.Abs((a.rq-p.Load)/a.cpus - (b.rq+p.Load)/b.cpus)
		if gap < bestGap {
			best, bestGap = i, gap
		}
	}
	if best >= 0 {
		p := procs[best]
		d.Move, d.Proc, d.ProcLoad, d.Kind = true, p.ID, p.Load, KindMove
		d.Reason = fmt.Sprintf("move %v (load %.2f) from node %d (%.2f per CPU) to node %d (%.2f): %.2f + %.1f×%.2f/%g < %.2f; leaves them %.2f apart",
			p.ID, p.Load, a.v.Node, a.x(), b.v.Node, b.x(), b.x(), cfg.Stability, p.Load, minCPUs, a.x(), bestGap)
		return d
	}
	head := fmt.Sprintf("no move: node %d (%.2f per CPU) is above node %d (%.2f)", a.v.Node, a.x(), b.v.Node, b.x())
	switch {
	case on == 0:
		d.Kind = KindNothing
		d.Reason = head + " but runs no registered, migratable process"
	case heavy > 0:
		d.ProcLoad, d.Kind = lightestHeavy.Load, KindTooHeavy
		d.Reason = fmt.Sprintf("%s but no process is light enough: the lightest that may move, %v (load %.2f), would make it %.2f + %.1f×%.2f/%g ≥ %.2f",
			head, lightestHeavy.ID, lightestHeavy.Load, b.x(), cfg.Stability, lightestHeavy.Load, minCPUs, a.x())
	case cooling > 0:
		d.Kind = KindCoolDown
		d.Reason = fmt.Sprintf("%s but its %d process(es) heavy enough to matter moved within the cool-down (%v)", head, cooling, cfg.CoolDown)
	default:
		d.Kind = KindNothing
		d.Reason = fmt.Sprintf("%s but its %d process(es) are idle (load under %.2f)", head, light, cfg.MinLoad)
	}
	return d
}
