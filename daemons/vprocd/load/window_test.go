package load

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func sec(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

func vec(node, rq, cpus uint32, at time.Time) Vector {
	return Vector{Node: node, RunQueue: rq, CPUs: cpus, Load1: float64(rq), FreeMem: 1 << 30, At: at}
}

func nodes(es []Entry) []uint32 {
	var out []uint32
	for _, e := range es {
		out = append(out, e.Node)
	}
	return out
}

func TestHeard(t *testing.T) {
	w := New(Config{Self: 1, Size: 3})
	w.Members([]uint32{1, 2, 3, 4, 5, 6})
	for _, tc := range []struct {
		name string
		now  int
		v    Vector
		err  string
		want []uint32
	}{
		{"a peer", 0, vec(2, 1, 1, sec(0)), "", []uint32{2}},
		{"itself is ignored", 0, vec(1, 1, 1, sec(0)), "", []uint32{2}},
		{"a node not UP is ignored", 0, vec(9, 1, 1, sec(0)), "", []uint32{2}},
		{"node 0", 0, vec(0, 1, 1, sec(0)), "load: a vector of node 0", []uint32{2}},
		{"no CPU", 0, vec(3, 1, 0, sec(0)), "load: node 3's vector has no CPU", []uint32{2}},
		{"bad load", 0, Vector{Node: 3, CPUs: 1, Load1: -1}, "load: node 3's vector has load average -1", []uint32{2}},
		{"bad average run queue", 0, Vector{Node: 3, CPUs: 1, RunQueueAvg: math.NaN()}, "load: node 3's vector has average run queue NaN", []uint32{2}},
		{"negative average run queue", 0, Vector{Node: 3, CPUs: 1, RunQueueAvg: -0.5}, "load: node 3's vector has average run queue -0.5", []uint32{2}},
		{"two more fill the window", 1, vec(3, 1, 1, sec(1)), "", []uint32{2, 3}},
		{"", 2, vec(4, 1, 1, sec(2)), "", []uint32{2, 3, 4}},
		{"a fourth evicts the one heard longest ago", 3, vec(5, 1, 1, sec(3)), "", []uint32{3, 4, 5}},
		{"a newer vector of a node kept replaces it", 4, vec(3, 7, 1, sec(4)), "", []uint32{3, 4, 5}},
		{"an older one is ignored", 4, vec(3, 9, 1, sec(2)), "", []uint32{3, 4, 5}},
		{"vectors heard more than 8s ago expire", 11, vec(6, 1, 1, sec(11)), "", []uint32{3, 5, 6}},
	} {
		err := w.Heard(sec(tc.now), tc.v)
		got := nodes(w.Vectors(sec(tc.now)))
		if errText(err) != tc.err || !slices.Equal(got, tc.want) {
			t.Fatalf("%s: Heard(%+v) = %v, window %v; want %s, %v", tc.name, tc.v, err, got, tc.err, tc.want)
		}
	}
	if e := w.Vectors(sec(11)); e[0].RunQueue != 7 {
		t.Errorf("node 3 kept run queue %d, want 7 (the newer vector)", e[0].RunQueue)
	}
	w.Membership(5, false)
	if got := nodes(w.Vectors(sec(11))); !slices.Equal(got, []uint32{3, 6}) {
		t.Errorf("after node 5 DOWN the window holds %v", got)
	}
	w.Membership(5, true)
	w.Members([]uint32{1, 6})
	if got := nodes(w.Vectors(sec(11))); !slices.Equal(got, []uint32{6}) {
		t.Errorf("after Members(1, 6) the window holds %v", got)
	}
}

// TestTick: one peer per second, uniformly among the UP nodes but itself,
// deterministic for a seed; none before the first measurement or alone.
func TestTick(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	w := New(Config{Self: 2})
	w.Members([]uint32{1, 2, 3, 4})
	if _, _, ok := w.Tick(sec(0), r); ok {
		t.Fatal("Tick sent before any measurement")
	}
	w.Measured(sec(0), vec(0, 3, 2, sec(0)))
	counts := map[uint32]int{}
	for i := range 3000 {
		to, v, ok := w.Tick(sec(i), r)
		if !ok || v.Node != 2 || v.RunQueue != 3 {
			t.Fatalf("Tick = %d, %+v, %v", to, v, ok)
		}
		counts[to]++
	}
	if len(counts) != 3 || counts[2] != 0 {
		t.Fatalf("peers chosen %v, want 1, 3 and 4", counts)
	}
	for n, c := range counts {
		if c < 900 || c > 1100 {
			t.Errorf("node %d chosen %d times of 3000", n, c)
		}
	}
	w.Members([]uint32{2})
	if _, _, ok := w.Tick(sec(0), r); ok {
		t.Fatal("Tick sent with no peer UP")
	}
	a, b := New(Config{Self: 1}), New(Config{Self: 1})
	ra, rb := rand.New(rand.NewPCG(7, 7)), rand.New(rand.NewPCG(7, 7))
	for _, w := range []*Window{a, b} {
		w.Members([]uint32{1, 2, 3, 4, 5})
		w.Measured(sec(0), vec(1, 0, 1, sec(0)))
	}
	for i := range 50 {
		x, _, _ := a.Tick(sec(i), ra)
		y, _, _ := b.Tick(sec(i), rb)
		if x != y {
			t.Fatalf("the same seed chose %d and %d", x, y)
		}
	}
}

// TestPlaceMargin: the rule of Place, one placement at a time from a
// fresh Window on node 1 with peers 2 and 3 (1 CPU each but where said).
func TestPlaceMargin(t *testing.T) {
	for _, tc := range []struct {
		name    string
		margin  float64
		vectors []Vector // node 1 is self
		current uint32   // a placement made first on this node
		want    uint32
	}{
		{"the lowest score", 0.25, []Vector{vec(1, 2, 1, t0), vec(2, 1, 1, t0), vec(3, 3, 1, t0)}, 0, 2},
		{"per CPU", 0.25, []Vector{vec(1, 2, 1, t0), vec(2, 3, 4, t0), vec(3, 1, 1, t0)}, 0, 2},
		{"a tie goes to self", 0.25, []Vector{vec(1, 1, 1, t0), vec(2, 1, 1, t0), vec(3, 1, 1, t0)}, 0, 1},
		{"a tie among peers to the lowest number", 0.25, []Vector{vec(1, 5, 1, t0), vec(3, 1, 1, t0), vec(2, 1, 1, t0)}, 0, 2},
		// After one placement on 3 (score 4/4+1/4 = 1.25), 2 at 1.0 is
		// lower by 0.25, not more: 3 stays.
		{"within the margin the current node stays", 0.25, []Vector{vec(1, 9, 1, t0), vec(2, 4, 4, t0), vec(3, 4, 4, t0)}, 3, 3},
		{"lower by more than the margin wins", 0.2, []Vector{vec(1, 9, 1, t0), vec(2, 4, 4, t0), vec(3, 4, 4, t0)}, 3, 2},
		// Both round to 1; the averages tell them apart.
		{"the unrounded average counts", 0.25, []Vector{vec(1, 5, 1, t0), {Node: 2, RunQueue: 1, RunQueueAvg: 1.4, CPUs: 1, At: t0}, {Node: 3, RunQueue: 1, RunQueueAvg: 0.6, CPUs: 1, At: t0}}, 0, 3},
		{"a vector without one is its rounded run queue", 0.25, []Vector{vec(1, 5, 1, t0), vec(2, 1, 1, t0), {Node: 3, RunQueue: 1, RunQueueAvg: 1.3, CPUs: 1, At: t0}}, 0, 2},
	} {
		w := New(Config{Self: 1, Margin: tc.margin})
		w.Members([]uint32{1, 2, 3})
		for _, v := range tc.vectors {
			if v.Node == 1 {
				w.Measured(t0, v)
			} else if err := w.Heard(t0, v); err != nil {
				t.Fatal(err)
			}
		}
		if tc.current != 0 {
			w.current = tc.current
			w.placed = append(w.placed, placement{node: tc.current, at: t0})
		}
		got, err := w.Place(t0, nil)
		if err != nil || got != tc.want {
			t.Errorf("%s: Place = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
}

func TestPlaceFilters(t *testing.T) {
	w := New(Config{Self: 1, MinFree: 1 << 20})
	if _, err := w.Place(t0, nil); err != ErrNoNode {
		t.Fatalf("Place on an empty window = %v", err)
	}
	w.Members([]uint32{1, 2, 3})
	w.Measured(t0, vec(1, 5, 1, t0))
	low := vec(2, 0, 1, t0)
	low.FreeMem = 1 << 19
	_ = w.Heard(t0, low)
	_ = w.Heard(t0, vec(3, 3, 1, t0))
	if got, _ := w.Place(t0, nil); got != 3 {
		t.Errorf("Place = %d, want 3 (2 lacks memory)", got)
	}
	if got, _ := w.Place(t0, func(n uint32) bool { return n != 3 }); got != 1 {
		t.Errorf("Place without 3 = %d, want 1", got)
	}
	if _, err := w.Place(t0, func(uint32) bool { return false }); err != ErrNoNode {
		t.Errorf("Place with nothing allowed = %v", err)
	}
	w2 := New(Config{Self: 1, MinFree: 1 << 40})
	w2.Members([]uint32{1, 2})
	w2.Measured(t0, vec(1, 5, 1, t0))
	_ = w2.Heard(t0, vec(2, 0, 1, t0))
	if got, _ := w2.Place(t0, nil); got != 2 {
		t.Errorf("Place when no node has MinFree = %d, want 2 (the filter is dropped)", got)
	}
}

// TestAlternate: two nodes whose scores are within the margin of each
// other take turns rather than all work piling on one. Each placement
// raises the chosen node's score by 1/CPUs; the choice moves once the gap
// passes the margin, after k = floor(Margin*CPUs)+1 placements from equal
// scores, so in steady state the runs are at most 2k long and the counts
// never drift more than k (+1 for the initial gap) apart.
func TestAlternate(t *testing.T) {
	for _, tc := range []struct {
		margin   float64
		cpus     uint32
		rq1, rq2 uint32
		run      int
	}{
		{0.2, 4, 4, 3, 2},
		{0.25, 1, 1, 1, 2},
		{0.5, 2, 2, 1, 4},
		{1, 4, 4, 3, 10},
	} {
		k := int(tc.margin*float64(tc.cpus)) + 1
		w := New(Config{Self: 1, Margin: tc.margin})
		w.Members([]uint32{1, 2})
		w.Measured(t0, vec(1, tc.rq1, tc.cpus, t0))
		_ = w.Heard(t0, vec(2, tc.rq2, tc.cpus, t0))
		counts := map[uint32]int{}
		var seq []uint32
		run, last := 0, uint32(0)
		for range 40 {
			n, err := w.Place(t0, nil)
			if err != nil {
				t.Fatal(err)
			}
			counts[n]++
			seq = append(seq, n)
			if n == last {
				run++
			} else {
				run, last = 1, n
			}
			if d := counts[1] - counts[2]; run > tc.run || d < -k-1 || d > k+1 {
				t.Fatalf("%+v: %v: %v", tc, seq, counts)
			}
		}
		if counts[1]+counts[2] != 40 || len(counts) != 2 {
			t.Fatalf("%+v: %v: %v", tc, seq, counts)
		}
	}
}

// TestPlaceStatic: 30 jobs placed in one burst over 3 equal nodes, no
// new vector heard meanwhile: the in-flight count spreads them evenly, to
// within Margin*CPUs+1 jobs.
func TestPlaceStatic(t *testing.T) {
	for _, margin := range []float64{0.01, 0.25, 0.5, 1} {
		w := New(Config{Self: 1, Margin: margin})
		w.Members([]uint32{1, 2, 3})
		w.Measured(t0, vec(1, 0, 2, t0))
		_ = w.Heard(t0, vec(2, 0, 2, t0))
		_ = w.Heard(t0, vec(3, 0, 2, t0))
		counts := map[uint32]int{}
		for range 30 {
			n, _ := w.Place(t0, nil)
			counts[n]++
		}
		lo, hi := min(counts[1], counts[2], counts[3]), max(counts[1], counts[2], counts[3])
		if lo+hi+(30-lo-hi) != 30 || hi-lo > int(margin*2)+1 || (margin <= 0.25 && (lo < 9 || hi > 11)) {
			t.Errorf("margin %v: 30 jobs over 3 equal nodes: %v", margin, counts)
		}
	}
}

// TestPlaceCluster simulates the lab test: 3 nodes of 2 CPUs
// measuring every second and exchanging one vector each to a random peer;
// node 1 places 3 CPU-bound jobs a second for 10 seconds (each runs 20s,
// so it shows in its node's run queue from the next measurement). The 30
// jobs land roughly evenly: 10±2 on each node.
func TestPlaceCluster(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 99))
		ws := map[uint32]*Window{}
		for n := uint32(1); n <= 3; n++ {
			ws[n] = New(Config{Self: n})
			ws[n].Members([]uint32{1, 2, 3})
		}
		running := map[uint32][]time.Time{} // node -> end times
		counts := map[uint32]int{}
		for s := range 12 {
			now := sec(s)
			for n := uint32(1); n <= 3; n++ {
				rq := uint32(0)
				for _, end := range running[n] {
					if end.After(now) {
						rq++
					}
				}
				ws[n].Measured(now, vec(n, rq, 2, now))
			}
			for n := uint32(1); n <= 3; n++ {
				if to, v, ok := ws[n].Tick(now, r); ok {
					if err := ws[to].Heard(now.Add(time.Millisecond), v); err != nil {
						t.Fatal(err)
					}
				}
			}
			if s >= 10 {
				continue
			}
			for j := range 3 {
				at := now.Add(time.Duration(100*(j+1)) * time.Millisecond)
				n, err := ws[1].Place(at, nil)
				if err != nil {
					t.Fatal(err)
				}
				counts[n]++
				running[n] = append(running[n], at.Add(20*time.Second))
			}
		}
		for n := uint32(1); n <= 3; n++ {
			if counts[n] < 8 || counts[n] > 12 {
				t.Errorf("seed %d: 30 jobs over 3 equal nodes: %v", seed, counts)
				break
			}
		}
	}
}

func TestSettle(t *testing.T) {
	w := New(Config{Self: 1})
	w.Members([]uint32{1, 2})
	w.Measured(t0, vec(1, 0, 1, t0))
	if n, _ := w.Place(t0, nil); n != 1 {
		t.Fatalf("Place = %d", n)
	}
	if e := w.Vectors(sec(5)); e[0].InFlight != 1 || e[0].Score != 1 {
		t.Fatalf("in flight within Settle: %+v", e[0])
	}
	if e := w.Vectors(sec(6)); e[0].InFlight != 0 {
		t.Fatalf("in flight after Settle: %+v", e[0])
	}
	if n, _ := w.Place(sec(6), nil); n != 1 {
		t.Fatalf("Place = %d", n)
	}
	w.Measured(sec(7), vec(1, 1, 1, sec(7)))
	if e := w.Vectors(sec(7)); e[0].InFlight != 0 || e[0].Score != 1 {
		t.Fatalf("a newer measurement counts the job instead: %+v", e[0])
	}
}

// TestInFlightBounded: placements asked in a loop keep at most MaxInFlight
// in flight, the newest.
func TestInFlightBounded(t *testing.T) {
	w := New(Config{Self: 1})
	w.Members([]uint32{1})
	w.Measured(t0, Vector{CPUs: 1, At: t0})
	for range MaxInFlight + 100 {
		if _, err := w.Place(t0, nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.placed) != MaxInFlight {
		t.Errorf("%d placements kept, want %d", len(w.placed), MaxInFlight)
	}
	if e := w.Vectors(t0); e[0].InFlight != MaxInFlight {
		t.Errorf("in flight %d, want %d", e[0].InFlight, MaxInFlight)
	}
}
