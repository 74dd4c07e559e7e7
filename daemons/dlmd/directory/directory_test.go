package directory

import (
	"fmt"
	"slices"
	"testing"
)

func TestMasterIsStableAndSpread(t *testing.T) {
	members := []NodeID{1, 2, 3}
	count := map[NodeID]int{}
	for i := range 3000 {
		r := fmt.Sprintf("res-%d", i)
		m := Master(members, "ls", r)
		if m != Master([]NodeID{3, 1, 2}, "ls", r) {
			t.Fatalf("%s: master depends on member order", r)
		}
		count[m]++
		// Rendezvous: removing a node that is not the master keeps it.
		for _, gone := range members {
			if gone == m {
				continue
			}
			rest := slices.DeleteFunc(slices.Clone(members), func(n NodeID) bool { return n == gone })
			if got := Master(rest, "ls", r); got != m {
				t.Fatalf("%s: master %d moved to %d when %d left", r, m, got, gone)
			}
		}
		// Adding a node moves a resource only to the new node.
		if got := Master([]NodeID{1, 2, 3, 4}, "ls", r); got != m && got != 4 {
			t.Fatalf("%s: master %d moved to %d when 4 joined", r, m, got)
		}
	}
	for _, n := range members {
		if count[n] < 800 || count[n] > 1200 {
			t.Fatalf("uneven spread: %v", count)
		}
	}
	if Master(nil, "ls", "r") != 0 {
		t.Fatal("master of no members")
	}
	if Master([]NodeID{5}, "a", "b") != 5 {
		t.Fatal("single member")
	}
}

func TestMakePlan(t *testing.T) {
	id := func(e uint64, r uint32) ID { return ID{e, r} }
	rep := func(n NodeID, inc uint64, last ID, has bool) Report {
		return Report{Node: n, Incarnation: inc, Last: last, HasLast: has}
	}
	prev := Completed{ID: id(3, 0), Members: map[NodeID]uint64{1: 10, 2: 20, 3: 30}}
	tests := []struct {
		name      string
		reports   []Report
		last      Completed
		haveLast  bool
		full      bool
		old, lost []NodeID
	}{
		{name: "first recovery: nothing to move", reports: []Report{rep(1, 10, ID{}, false), rep(2, 20, ID{}, false)}},
		{name: "node down", reports: []Report{rep(1, 10, id(3, 0), true), rep(2, 20, id(3, 0), true)},
			last: prev, haveLast: true, old: []NodeID{1, 2, 3}, lost: []NodeID{3}},
		{name: "node up (new node does not vote)",
			reports: []Report{rep(1, 10, id(3, 0), true), rep(2, 20, id(3, 0), true), rep(3, 30, id(3, 0), true), rep(4, 40, ID{}, false)},
			last:    prev, haveLast: true, old: []NodeID{1, 2, 3}},
		{name: "dlmd restarted: new incarnation is lost",
			reports: []Report{rep(1, 10, id(3, 0), true), rep(2, 21, ID{}, false), rep(3, 30, id(3, 0), true)},
			last:    prev, haveLast: true, old: []NodeID{1, 2, 3}, lost: []NodeID{2}},
		{name: "a member of the agreed recovery that did not complete it is lost",
			reports: []Report{rep(1, 10, id(3, 0), true), rep(2, 20, ID{}, false), rep(3, 30, id(3, 0), true)},
			last:    prev, haveLast: true, old: []NodeID{1, 2, 3}, lost: []NodeID{2}},
		{name: "disagreement: full", reports: []Report{rep(1, 10, id(3, 0), true), rep(2, 20, id(2, 0), true)},
			last: prev, haveLast: true, full: true},
		{name: "own record not the agreed one: no old directory",
			reports: []Report{rep(1, 10, id(3, 0), true), rep(4, 40, ID{}, false)},
			last:    Completed{ID: id(1, 0), Members: map[NodeID]uint64{4: 1}}, haveLast: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := MakePlan(id(4, 0), tt.reports).WithOld(tt.last, tt.haveLast)
			if p.Full != tt.full || !slices.Equal(p.Old, tt.old) || !slices.Equal(p.Lost, tt.lost) {
				t.Fatalf("plan full=%v old=%v lost=%v, want full=%v old=%v lost=%v", p.Full, p.Old, p.Lost, tt.full, tt.old, tt.lost)
			}
			if p.Installed.ID != id(4, 0) || len(p.Installed.Members) != len(tt.reports) {
				t.Fatalf("installed %+v", p.Installed)
			}
		})
	}
}

func TestMoves(t *testing.T) {
	down := MakePlan(ID{4, 0}, []Report{{Node: 1, Incarnation: 1, Last: ID{3, 0}, HasLast: true}, {Node: 2, Incarnation: 2, Last: ID{3, 0}, HasLast: true}}).
		WithOld(Completed{ID: ID{3, 0}, Members: map[NodeID]uint64{1: 1, 2: 2, 3: 3}}, true)
	restarted := MakePlan(ID{4, 1}, []Report{{Node: 1, Incarnation: 1, Last: ID{3, 0}, HasLast: true}, {Node: 2, Incarnation: 9}, {Node: 3, Incarnation: 3, Last: ID{3, 0}, HasLast: true}}).
		WithOld(Completed{ID: ID{3, 0}, Members: map[NodeID]uint64{1: 1, 2: 2, 3: 3}}, true)
	joined := MakePlan(ID{5, 0}, []Report{{Node: 1, Incarnation: 1, Last: ID{3, 0}, HasLast: true}, {Node: 2, Incarnation: 2, Last: ID{3, 0}, HasLast: true}, {Node: 4, Incarnation: 4}}).
		WithOld(Completed{ID: ID{3, 0}, Members: map[NodeID]uint64{1: 1, 2: 2}}, true)
	noOld := MakePlan(ID{4, 0}, []Report{{Node: 1, Incarnation: 1, Last: ID{3, 0}, HasLast: true}, {Node: 2, Incarnation: 2, Last: ID{3, 0}, HasLast: true}})
	for _, tc := range []struct {
		name   string
		plan   Plan
		master NodeID
		moves  bool
	}{
		{"master down", down, 3, true},
		{"master survives", down, 1, false},
		{"other master survives", down, 2, false},
		{"master restarted", restarted, 2, true},
		{"master kept across a restart elsewhere", restarted, 3, false},
		{"a node joins: nothing moves", joined, 1, false},
		{"a node joins: nothing moves (2)", joined, 2, false},
		{"unknown master", down, 0, true},
		{"no old directory", noOld, 1, true},
		{"full", Plan{Full: true, Old: []NodeID{1}, New: []NodeID{1}}, 1, true},
	} {
		if got := tc.plan.Moves(tc.master); got != tc.moves {
			t.Errorf("%s: Moves(%d) = %v, want %v", tc.name, tc.master, got, tc.moves)
		}
	}
	for i := range 100 {
		r := fmt.Sprintf("r%d", i)
		if m := down.NewMaster("ls", r); m != 1 && m != 2 {
			t.Fatalf("%s: new master %d is not a survivor", r, m)
		}
	}
}

func TestBarrier(t *testing.T) {
	b := NewBarrier(ID{5, 1}, []NodeID{3, 1, 2, 1})
	steps := []struct {
		ack  NodeID
		want bool
	}{{1, false}, {9, false}, {1, false}, {3, false}, {2, true}}
	for _, s := range steps {
		if got := b.Ack(Report{Node: s.ack}); got != s.want {
			t.Fatalf("ack %d: %v, missing %v", s.ack, got, b.Missing())
		}
	}
	if len(b.Reports()) != 3 || len(b.Missing()) != 0 {
		t.Fatalf("reports %v", b.Reports())
	}
	for i, n := range []NodeID{2, 2, 7, 1} {
		if b.CopiesDone(n) {
			t.Fatalf("step %d: done too early", i)
		}
	}
	if !b.CopiesDone(3) {
		t.Fatal("not done after all members")
	}
}

func TestMembers(t *testing.T) {
	var m Members
	steps := []struct {
		epoch   uint64
		node    NodeID
		up      bool
		changed bool
		want    []NodeID
	}{
		{1, 1, true, true, []NodeID{1}},
		{2, 2, true, true, []NodeID{1, 2}},
		{2, 3, true, false, []NodeID{1, 2}},
		{3, 1, false, true, []NodeID{2}},
		{4, 1, true, true, []NodeID{1, 2}},
	}
	for _, s := range steps {
		if got := m.Apply(s.epoch, s.node, s.up); got != s.changed || !slices.Equal(m.List(), s.want) {
			t.Fatalf("epoch %d: changed %v members %v", s.epoch, got, m.List())
		}
	}
	if !(ID{1, 2}).Less(ID{2, 0}) || !(ID{2, 0}).Less(ID{2, 1}) || (ID{2, 1}).Less(ID{2, 1}) {
		t.Fatal("ID order")
	}
}

func TestPlanEra(t *testing.T) {
	rep := func(n NodeID, era uint64) Report { return Report{Node: n, Incarnation: 1, Era: era} }
	for _, tc := range []struct {
		name    string
		id      ID
		reports []Report
		want    uint64
	}{
		{"first recovery", ID{Epoch: 1}, []Report{rep(1, 0), rep(2, 0)}, 1 << 8},
		{"a later epoch", ID{Epoch: 3, Round: 2}, []Report{rep(1, 1<<8), rep(2, 2<<8|1)}, 3<<8 | 2},
		{"rounds past 255 stay", ID{Epoch: 3, Round: 900}, nil, 3<<8 | 255},
		// Every dlmd fenced and rejoined at round 0: above what they
		// planned before.
		{"rounds start again", ID{Epoch: 3}, []Report{rep(1, 3<<8|4), rep(2, 3<<8|2)}, 3<<8 | 5},
		{"a member ahead", ID{Epoch: 4}, []Report{rep(1, 4<<8), rep(2, 0)}, 4<<8 | 1},
	} {
		if got := MakePlan(tc.id, tc.reports).Era; got != tc.want {
			t.Errorf("%s: Era = %#x, want %#x", tc.name, got, tc.want)
		}
	}
}
