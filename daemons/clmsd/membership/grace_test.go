package membership

import (
	"fmt"
	"testing"
	"time"
)

func ms(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

// held returns the presences of numbers ns, each holding session "s<n>"
// (gen bumps the session, as a node that rejoins gets a new one).
func held(gen int, ns ...int) (map[int]Presence, map[int]string) {
	a := alive(ns...)
	h := map[int]string{}
	for n, p := range a {
		p.Session = fmt.Sprintf("s%d.%d", n, gen)
		a[n] = p
		h[n] = p.Session
	}
	return a, h
}

// TestGraceSteps drives Grace and Reconcile together through snapshots, as
// the shell does: Hold, then Reconcile on what Hold returns.
func TestGraceSteps(t *testing.T) {
	type step struct {
		at      int   // ms after t0
		alive   []int // nodes whose alive key is held
		gen     int   // session generation of the held keys
		leaving []int
		events  string
		recheck int // ms after t0; -1: none
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"a node dies while all are UP: NODEDOWN at once", []step{
			{0, []int{1, 2, 3, 4, 5}, 0, nil, "NODEUP 1@1, NODEUP 2@2, NODEUP 3@3, NODEUP 4@4, NODEUP 5@5", -1},
			{100, []int{1, 2, 3, 5}, 0, nil, "NODEDOWN 4@6", -1},
		}},
		{"after a heal, a healthy node failed for a moment keeps its membership", []step{
			{0, []int{1, 2, 3, 4, 5}, 0, nil, "NODEUP 1@1, NODEUP 2@2, NODEUP 3@3, NODEUP 4@4, NODEUP 5@5", -1},
			{100, []int{1, 2, 4, 5}, 0, nil, "NODEDOWN 3@6", -1}, // node 3 cut off
			// the heal: node 3's late verdict fails node 4 in Consul
			{5000, []int{1, 2, 5}, 0, nil, "", 6000},
			// node 4 refuted and took its key again with a new session
			{5120, []int{1, 2, 5}, 0, nil, "", 6000},
			{5150, []int{1, 2, 4, 5}, 1, nil, "", -1},
			// node 3 rejoins seconds later
			{9000, []int{1, 2, 3, 4, 5}, 1, nil, "NODEUP 3@7", -1},
		}},
		{"a second node that really dies during an outage is DOWN once its grace ends", []step{
			{0, []int{1, 2, 3, 4}, 0, nil, "NODEUP 1@1, NODEUP 2@2, NODEUP 3@3, NODEUP 4@4", -1},
			{100, []int{1, 2, 4}, 0, nil, "NODEDOWN 3@5", -1},
			{2000, []int{1, 2}, 0, nil, "", 3000},
			{2500, []int{1, 2}, 0, nil, "", 3000},
			{3000, []int{1, 2}, 0, nil, "NODEDOWN 4@6", -1},
			{3100, []int{1, 2}, 0, nil, "", -1},
		}},
		{"two nodes lost at once during an outage share one grace each", []step{
			{0, []int{1, 2, 3, 4, 5}, 0, nil, "NODEUP 1@1, NODEUP 2@2, NODEUP 3@3, NODEUP 4@4, NODEUP 5@5", -1},
			{100, []int{1, 2, 3, 4}, 0, nil, "NODEDOWN 5@6", -1},
			{1000, []int{1, 2, 4}, 0, nil, "", 2000},
			{1500, []int{1, 2}, 0, nil, "", 2000},
			{2000, []int{1, 2}, 0, nil, "NODEDOWN 3@7", 2500},
			{2500, []int{1, 2}, 0, nil, "NODEDOWN 4@8", -1},
		}},
		{"a graceful leave is not held", []step{
			{0, []int{1, 2, 3, 4}, 0, nil, "NODEUP 1@1, NODEUP 2@2, NODEUP 3@3, NODEUP 4@4", -1},
			{100, []int{1, 2, 4}, 0, nil, "NODEDOWN 3@5", -1},
			{200, []int{1, 2}, 0, []int{4}, "NODELEAVE 4@6", -1},
		}},
		{"once nobody is DOWN any more, a lost key is DOWN at once", []step{
			{0, []int{1, 2, 3}, 0, nil, "NODEUP 1@1, NODEUP 2@2, NODEUP 3@3", -1},
			{100, []int{1, 2}, 0, nil, "NODEDOWN 3@4", -1},
			{200, []int{1}, 0, nil, "", 1200},
			{300, []int{1, 2, 3}, 1, nil, "NODEUP 3@5", -1},
			{400, []int{1, 3}, 1, nil, "NODEDOWN 2@6", -1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v View
			var g Grace
			for i, s := range tt.steps {
				a, h := held(s.gen, s.alive...)
				o, recheck := g.Hold(v, Observed{Alive: a, Holders: h, Leaving: set(s.leaving...), Now: ms(s.at)}, DownGrace)
				if len(o.Alive) < len(a) {
					t.Fatalf("step %d: Hold dropped a live node: %v from %v", i, o.Alive, a)
				}
				next, events := Reconcile(v, o, 100)
				if got := summary(events); got != s.events {
					t.Errorf("step %d (%d ms): events %q, want %q (view %s)", i, s.at, got, s.events, states(next))
				}
				want := time.Time{}
				if s.recheck >= 0 {
					want = ms(s.recheck)
				}
				if !recheck.Equal(want) {
					t.Errorf("step %d (%d ms): recheck %v, want %v", i, s.at, recheck.Sub(t0), want.Sub(t0))
				}
				v = next
			}
		})
	}
}

// TestGraceDoesNotModifyItsInput: the shell's snapshot stays as read.
func TestGraceDoesNotModifyItsInput(t *testing.T) {
	v, _ := Reconcile(View{}, Observed{Alive: alive(1, 2, 3), Now: ms(0)}, 10)
	v, _ = Reconcile(v, Observed{Alive: alive(1, 2), Now: ms(1)}, 10)
	a, h := held(0, 1)
	var g Grace
	o, recheck := g.Hold(v, Observed{Alive: a, Holders: h, Now: ms(2)}, DownGrace)
	if recheck.IsZero() || len(o.Alive) != 2 {
		t.Fatalf("node 2 not held: %v, recheck %v", o.Alive, recheck)
	}
	if len(a) != 1 {
		t.Fatalf("Hold changed the snapshot's Alive: %v", a)
	}
}
