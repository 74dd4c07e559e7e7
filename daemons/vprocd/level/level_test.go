package level

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/load"
)

var t0 = time.Unix(1_800_000_000, 0)

// vec is node's vector with rq runnable tasks on cpus CPUs, measured a
// second before t0.
func vec(node, rq, cpus uint32) load.Vector {
	return load.Vector{Node: node, RunQueue: rq, CPUs: cpus, At: t0.Add(-time.Second)}
}

func pid(node uint32, n int32) cpid.CPID { return cpid.MustMake(node, n) }

// busy is a process on node that never moved.
func busy(node uint32, n int32, l float64) Proc { return Proc{ID: pid(node, n), Node: node, Load: l} }

func TestDecide(t *testing.T) {
	moved := func(p Proc, from uint32, ago time.Duration) Proc {
		p.From, p.LastMove = from, t0.Add(-ago)
		return p
	}
	tests := []struct {
		name   string
		cfg    Config
		self   uint32
		nodes  []load.Vector
		procs  []Proc
		want   cpid.CPID // 0: no move
		from   uint32
		to     uint32
		reason string
	}{
		{name: "balanced: no move", nodes: []load.Vector{vec(1, 2, 1), vec(2, 2, 1), vec(3, 2, 1)},
			procs:  []Proc{busy(1, 1, 1), busy(1, 2, 1), busy(2, 3, 1)},
			reason: "balanced"},
		{name: "within the margin per CPU: no move", nodes: []load.Vector{vec(1, 9, 4), vec(2, 8, 4)},
			procs: []Proc{busy(1, 1, 1)}, reason: "by more than the margin 0.25"},
		{name: "above the margin but within the stability factor: no move", nodes: []load.Vector{vec(1, 3, 1), vec(2, 2, 1)},
			procs:  []Proc{busy(1, 1, 1), busy(1, 2, 1), busy(1, 3, 1)},
			reason: "no process is light enough: the lightest that may move, 4194305 (load 1.00), would make it 2.00 + 1.3×1.00/1 ≥ 3.00"},
		{name: "just outside the stability factor: moves", nodes: []load.Vector{vec(1, 4, 1), vec(2, 2, 1)},
			procs: []Proc{busy(1, 1, 1)}, want: pid(1, 1), from: 1, to: 2, reason: "2.00 + 1.3×1.00/1 < 4.00"},
		{name: "6/0/0: to the least loaded, the lower number on a tie", nodes: []load.Vector{vec(3, 0, 1), vec(1, 6, 1), vec(2, 0, 1)},
			procs: []Proc{busy(1, 1, 1), busy(1, 2, 1), busy(1, 3, 1)}, want: pid(1, 1), from: 1, to: 2},
		{name: "the process that best closes the gap", nodes: []load.Vector{vec(1, 5, 1), vec(2, 2, 1)},
			procs: []Proc{busy(1, 1, 0.5), busy(1, 2, 1), busy(1, 3, 2), busy(1, 4, 1.5)},
			want:  pid(1, 4), from: 1, to: 2, reason: "leaves them 0.00 apart"},
		{name: "the best closer is too heavy for the stability rule: the next best", nodes: []load.Vector{vec(1, 5, 1), vec(2, 1, 1)},
			procs: []Proc{busy(1, 1, 3.5), busy(1, 2, 1), busy(1, 3, 0.2)},
			want:  pid(1, 2), from: 1, to: 2},
		{name: "a tie goes to the lower cpid", nodes: []load.Vector{vec(1, 4, 1), vec(2, 0, 1)},
			procs: []Proc{busy(1, 9, 1), busy(1, 3, 1), busy(1, 5, 1)}, want: pid(1, 3), from: 1, to: 2},
		{name: "cool-down: the process that just arrived stays, another goes", nodes: []load.Vector{vec(1, 6, 1), vec(2, 0, 1)},
			procs: []Proc{moved(busy(1, 1, 2), 3, 5*time.Second), busy(1, 2, 1)},
			want:  pid(1, 2), from: 1, to: 2},
		{name: "cool-down: all just arrived, no move", nodes: []load.Vector{vec(1, 6, 1), vec(2, 0, 1)},
			procs:  []Proc{moved(busy(1, 1, 2), 3, 5*time.Second), moved(busy(1, 2, 1), 3, 19*time.Second)},
			reason: "2 process(es) heavy enough to matter moved within the cool-down (20s)"},
		{name: "cool-down over: moves", nodes: []load.Vector{vec(1, 6, 1), vec(2, 0, 1)},
			procs: []Proc{moved(busy(1, 1, 2), 3, 20*time.Second)}, want: pid(1, 1), from: 1, to: 2},
		{name: "cool-down set in config", cfg: Config{CoolDown: time.Minute}, nodes: []load.Vector{vec(1, 6, 1), vec(2, 0, 1)},
			procs: []Proc{moved(busy(1, 1, 2), 3, 30*time.Second)}, reason: "cool-down (1m0s)"},
		{name: "idle processes do not move", nodes: []load.Vector{vec(1, 6, 1), vec(2, 0, 1)},
			procs: []Proc{busy(1, 1, 0.05), busy(1, 2, 0)}, reason: "idle (load under 0.10)"},
		{name: "nothing registered on the loaded node", nodes: []load.Vector{vec(1, 6, 1), vec(2, 0, 1)},
			procs: []Proc{busy(2, 1, 1)}, reason: "runs no registered, migratable process"},
		{name: "the next source when the most loaded cannot move", nodes: []load.Vector{vec(1, 8, 1), vec(2, 6, 1), vec(3, 0, 1)},
			procs: []Proc{busy(2, 1, 1)}, want: pid(2, 1), from: 2, to: 3},
		{name: "the next peer when the least loaded cannot take it", nodes: []load.Vector{vec(1, 12, 4), vec(2, 1, 1), vec(3, 6, 4)},
			// to node 2: 1 + 1.3×2/1 ≥ 3; to node 3: 1.5 + 1.3×2/4 < 3.
			procs: []Proc{busy(1, 1, 2)}, want: pid(1, 1), from: 1, to: 3, reason: "1.50 + 1.3×2.00/4 < 3.00"},
		{name: "no peer can take it: the reason is about the least loaded", nodes: []load.Vector{vec(1, 3, 1), vec(2, 1, 1), vec(3, 2, 1)},
			procs: []Proc{busy(1, 1, 2)}, reason: "node 1 (3.00 per CPU) is above node 2 (1.00) but no process is light enough"},
		{name: "CPUs count: a 1-CPU node above a 4-CPU peer", nodes: []load.Vector{vec(1, 3, 1), vec(2, 4, 4)},
			procs: []Proc{busy(1, 1, 1)}, want: pid(1, 1), from: 1, to: 2, reason: "1.00 + 1.3×1.00/1 < 3.00"},
		{name: "CPUs count: 4-CPU nodes at 9 and 6 are 0.75 apart, a 1-load move is 0.25 each", nodes: []load.Vector{vec(1, 9, 4), vec(2, 6, 4)},
			procs: []Proc{busy(1, 1, 1)}, want: pid(1, 1), from: 1, to: 2},
		{name: "self: only its own processes", self: 2, nodes: []load.Vector{vec(1, 6, 1), vec(2, 3, 1), vec(3, 0, 1)},
			procs: []Proc{busy(1, 1, 1), busy(2, 2, 1)}, want: pid(2, 2), from: 2, to: 3},
		{name: "self: a lightly loaded node moves nothing", self: 3, nodes: []load.Vector{vec(1, 6, 1), vec(3, 0, 1)},
			procs:  []Proc{busy(1, 1, 1)},
			reason: "this node (3, 0.00 per CPU) is not above its least loaded peer, node 1 (6.00), by more than the margin"},
		{name: "self without a vector", self: 4, nodes: []load.Vector{vec(1, 6, 1), vec(2, 0, 1)},
			procs: []Proc{busy(1, 1, 1)}, reason: "no load vector of this node (4)"},
		{name: "one node", nodes: []load.Vector{vec(1, 6, 1)}, procs: []Proc{busy(1, 1, 1)}, reason: "1 node(s) with a load vector, need 2"},
		{name: "a process on a node without a vector stays", nodes: []load.Vector{vec(1, 0, 1), vec(2, 0, 1)},
			procs: []Proc{busy(5, 1, 1)}, reason: "balanced"},
		{name: "a stale vector: a move since is counted on both nodes", nodes: []load.Vector{vec(1, 6, 1), vec(2, 0, 1), vec(3, 0, 1)},
			procs: []Proc{moved(busy(2, 1, 1), 1, 0), busy(1, 2, 1)}, want: pid(1, 2), from: 1, to: 3,
			reason: "from node 1 (5.00 per CPU) to node 3 (0.00)"},
		{name: "a vector newer than the move already counts it", nodes: []load.Vector{
			{Node: 1, RunQueue: 5, CPUs: 1, At: t0}, {Node: 2, RunQueue: 1, CPUs: 1, At: t0}, vec(3, 0, 1)},
			procs: []Proc{moved(busy(2, 1, 1), 1, time.Second), busy(1, 2, 1)}, want: pid(1, 2), from: 1, to: 3,
			// node 3's vector is older than the move, which did not touch it.
			reason: "from node 1 (5.00 per CPU) to node 3 (0.00)"},
		{name: "a bad stability factor is the default", cfg: Config{Stability: 0.5}, nodes: []load.Vector{vec(1, 3, 1), vec(2, 2, 1)},
			procs: []Proc{busy(1, 1, 1)}, reason: "1.3×1.00"},
		{name: "a larger stability factor holds more back", cfg: Config{Stability: 2.5}, nodes: []load.Vector{vec(1, 4, 1), vec(2, 2, 1)},
			procs: []Proc{busy(1, 1, 1)}, reason: "2.5×1.00"},
		{name: "a load that is not a number is ignored", nodes: []load.Vector{vec(1, 6, 1), vec(2, 0, 1)},
			procs: []Proc{{ID: pid(1, 1), Node: 1, Load: nan()}, busy(1, 2, -1)}, reason: "runs no registered"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.cfg, Input{Now: t0, Self: tc.self, Nodes: tc.nodes, Procs: tc.procs})
			if d.Move != (tc.want != 0) || d.Proc != tc.want || (d.Move && (d.From != tc.from || d.To != tc.to)) {
				t.Fatalf("Decide = %+v, want move of %v from %d to %d", d, tc.want, tc.from, tc.to)
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("reason %q, want it to contain %q", d.Reason, tc.reason)
			}
			if d.Move != strings.HasPrefix(d.Reason, "move ") || !d.Move && !strings.HasPrefix(d.Reason, "no move: ") {
				t.Errorf("reason %q does not start with what it decided", d.Reason)
			}
			if want := kindOf(d); d.Kind != want {
				t.Errorf("kind %q of %q, want %q", d.Kind, d.Reason, want)
			}
			// The order of the inputs does not matter.
			r := rand.New(rand.NewPCG(1, 2))
			for range 5 {
				nodes, procs := append([]load.Vector(nil), tc.nodes...), append([]Proc(nil), tc.procs...)
				r.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
				r.Shuffle(len(procs), func(i, j int) { procs[i], procs[j] = procs[j], procs[i] })
				if again := Decide(tc.cfg, Input{Now: t0, Self: tc.self, Nodes: nodes, Procs: procs}); again != d {
					t.Fatalf("shuffled inputs: %+v, want %+v", again, d)
				}
			}
		})
	}
}

// kindOf is the Kind a decision's reason says.
func kindOf(d Decision) Kind {
	switch r := d.Reason; {
	case d.Move:
		return KindMove
	case strings.Contains(r, "load vector"):
		return KindNoLoad
	case strings.Contains(r, "light enough"):
		return KindTooHeavy
	case strings.Contains(r, "cool-down"):
		return KindCoolDown
	case strings.Contains(r, "runs no registered"), strings.Contains(r, "idle"):
		return KindNothing
	case strings.Contains(r, "by more than the margin"):
		return KindBalanced
	}
	return "?"
}

func nan() float64 { z := 0.0; return z / z }

// TestNoStraightBack: with the cool-down out of the way, the rule itself
// never moves a process straight back after a move it allowed, whatever
// the loads.
func TestNoStraightBack(t *testing.T) {
	cfg := Config{CoolDown: time.Nanosecond}
	r := rand.New(rand.NewPCG(3, 4))
	checked := 0
	for range 2000 {
		ca, cb := uint32(1+r.IntN(8)), uint32(1+r.IntN(8))
		ra, rb := uint32(r.IntN(40)), uint32(r.IntN(40))
		l := []float64{0.2, 0.5, 1, 1, 2, 3}[r.IntN(6)]
		p := busy(1, 1, l)
		in := Input{Now: t0, Nodes: []load.Vector{vec(1, ra, ca), vec(2, rb, cb)}, Procs: []Proc{p}}
		d := Decide(cfg, in)
		if !d.Move {
			continue
		}
		// The vectors after the move, measured after it.
		back := math32(float64(ra) - l)
		fwd := math32(float64(rb) + l)
		if float64(back) != float64(ra)-l || float64(fwd) != float64(rb)+l {
			continue // not a whole number of tasks: vectors cannot say it exactly
		}
		p.Node, p.From, p.LastMove = 2, 1, t0
		after := Input{Now: t0.Add(time.Second), Nodes: []load.Vector{
			{Node: 1, RunQueue: back, CPUs: ca, At: t0.Add(time.Millisecond)},
			{Node: 2, RunQueue: fwd, CPUs: cb, At: t0.Add(time.Millisecond)}}, Procs: []Proc{p}}
		if d2 := Decide(cfg, after); d2.Move {
			t.Fatalf("%d/%d CPUs, run queues %d/%d, load %v: moved 1→2 (%s) then back (%s)", ca, cb, ra, rb, l, d.Reason, d2.Reason)
		}
		checked++
	}
	if checked < 200 {
		t.Fatalf("only %d moves checked", checked)
	}
	t.Logf("%d moves checked", checked)
}

func math32(f float64) uint32 {
	if f < 0 {
		return 0
	}
	return uint32(f)
}
