package migrate

import (
	"errors"
	"testing"
	"time"
)

func TestMigrateRefusals(t *testing.T) {
	cases := []struct {
		name   string
		cfg    Config
		up     []uint32
		before func(n *Node)
		to     uint32
		want   error
	}{
		{name: "not started", want: ErrNotStarted, to: 2},
		{name: "self", up: []uint32{1, 2}, to: 1, want: ErrSelf},
		{name: "target down", up: []uint32{1, 2}, to: 3, want: ErrTargetDown},
		{name: "moving", up: []uint32{1, 2, 3}, to: 3, want: ErrMoving,
			before: func(n *Node) { _, _ = n.Migrate(t0, 7, 1, 2, CRIU) }},
		{name: "busy", cfg: Config{MaxMoves: 1}, up: []uint32{1, 2, 3}, to: 3, want: ErrBusy,
			before: func(n *Node) { _, _ = n.Migrate(t0, 8, 1, 2, CRIU) }},
		{name: "ok", up: []uint32{1, 2}, to: 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Node, c.cfg.Incarnation = 1, 1
			n := New(c.cfg)
			if c.up != nil {
				n.Start(t0, 1, c.up)
			}
			if c.before != nil {
				c.before(n)
			}
			mv, err := n.Migrate(t0, 7, 1, c.to, Cooperative)
			if !errors.Is(err, c.want) {
				t.Fatalf("Migrate: %v, want %v", err, c.want)
			}
			if err != nil {
				return
			}
			rd := n.Ready()
			if len(rd.Actions) != 1 || rd.Actions[0].Kind != Freeze || rd.Actions[0].Move != mv {
				t.Fatalf("Ready: %+v", rd)
			}
			if mv.ID != (ID{Source: 1, Inc: 1, N: 1}) || mv.Source != 1 || mv.Target != c.to || mv.Mech != Cooperative {
				t.Fatalf("move %+v", mv)
			}
		})
	}
}

// TestStrayMessages: messages that do not come from the party they must
// come from change nothing.
func TestStrayMessages(t *testing.T) {
	mv := Move{ID: ID{Source: 1, Inc: 1, N: 1}, CPID: 9, Origin: 3, Source: 1, Target: 2, Mech: CRIU}
	cases := []struct {
		name string
		at   uint32
		msg  Message
	}{
		{"image not from the source", 2, Message{Kind: MsgImage, From: 3, To: 2, Move: mv}},
		{"image naming another source", 2, Message{Kind: MsgImage, From: 1, To: 2, Move: Move{ID: ID{Source: 4, Inc: 1, N: 1}, Origin: 3, Source: 1, Target: 2}}},
		{"decided not from the arbiter", 2, Message{Kind: MsgDecided, From: 1, To: 2, Move: mv, Outcome: Commit, Ballot: Ballot{1, 1}}},
		{"query not from the arbiter", 2, Message{Kind: MsgQuery, From: 1, To: 2, Move: mv, Ballot: Ballot{1, 1}}},
		{"decide to a non-arbiter", 2, Message{Kind: MsgDecide, From: 1, To: 2, Move: mv, Outcome: Commit}},
		{"decide from a third node", 3, Message{Kind: MsgDecide, From: 4, To: 3, Move: mv, Outcome: Commit}},
		{"decide with source = target", 3, Message{Kind: MsgDecide, From: 1, To: 3, Move: Move{ID: ID{Source: 1}, Origin: 3, Source: 1, Target: 1}, Outcome: Commit}},
		{"abort not from the source", 2, Message{Kind: MsgAbort, From: 3, To: 2, Move: mv}},
		{"to another node", 2, Message{Kind: MsgImage, From: 1, To: 4, Move: mv}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := New(Config{Node: c.at, Incarnation: 1})
			n.Start(t0, 1, []uint32{1, 2, 3, 4})
			n.Step(t0, c.msg)
			if rd := n.Ready(); !rd.Empty() {
				t.Fatalf("Ready: %+v", rd)
			}
			if len(n.targets)+len(n.arbs)+len(n.done) != 0 {
				t.Fatalf("state changed: %d targets, %d arbiter records, %d tombstones", len(n.targets), len(n.arbs), len(n.done))
			}
		})
	}
}

func TestBallotOrder(t *testing.T) {
	cases := []struct {
		a, b Ballot
		less bool
	}{
		{Ballot{}, Ballot{1, 1}, true},
		{Ballot{1, 2}, Ballot{2, 1}, true},
		{Ballot{2, 1}, Ballot{2, 3}, true},
		{Ballot{2, 3}, Ballot{2, 3}, false},
		{Ballot{3, 1}, Ballot{2, 9}, false},
	}
	for _, c := range cases {
		if got := c.a.Less(c.b); got != c.less {
			t.Errorf("%v < %v = %v, want %v", c.a, c.b, got, c.less)
		}
	}
}

func TestDefaultsAndDeadline(t *testing.T) {
	n := New(Config{Node: 1, Incarnation: 1})
	if n.cfg.ConfirmTimeout != DefaultConfirmTimeout || n.cfg.Retry != DefaultRetry || n.cfg.AbortWait != DefaultAbortWait || n.cfg.MaxMoves != DefaultMaxMoves {
		t.Fatalf("defaults: %+v", n.cfg)
	}
	n.Start(t0, 1, []uint32{1, 2, 3})
	if d := n.NextDeadline(); !d.IsZero() {
		t.Fatalf("idle deadline %v", d)
	}
	mv, err := n.Migrate(t0, 5, 3, 2, CRIU)
	if err != nil {
		t.Fatal(err)
	}
	n.Frozen(t0, mv.ID, nil)
	if d := n.NextDeadline(); !d.Equal(t0.Add(DefaultConfirmTimeout)) {
		t.Fatalf("deadline %v, want the confirmation's", d)
	}
	n.Tick(t0.Add(DefaultConfirmTimeout))
	rd := n.Ready()
	last := rd.Messages[len(rd.Messages)-1]
	if last.Kind != MsgDecide || last.Outcome != Abort || last.To != 3 {
		t.Fatalf("after the timeout: %v", last)
	}
	if d := n.NextDeadline(); !d.Equal(t0.Add(DefaultConfirmTimeout + time.Second)) {
		t.Fatalf("deadline %v, want the retry", d)
	}
}

// TestArbiterChecksLocation: with the source DOWN, a target's confirmed
// copy is committed only if the origin's table does not put the process
// on a third node (there it is a stale copy of a move whose abort was
// lost with its arbiter).
func TestArbiterChecksLocation(t *testing.T) {
	for _, c := range []struct {
		name  string
		where uint32
		want  Outcome
	}{
		{"elsewhere", 1, Abort},
		{"at the source", 2, Commit},
		{"unknown", 0, Commit},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := New(Config{Node: 3, Incarnation: 1})
			n.Start(t0, 1, []uint32{1, 3, 4})
			n.Locate(9, c.where)
			mv := Move{ID: ID{Source: 2, Inc: 1, N: 1}, CPID: 9, Origin: 3, Source: 2, Target: 4, Mech: CRIU}
			n.Step(t0, Message{Kind: MsgDecide, From: 4, To: 3, Move: mv, Outcome: Commit})
			var b Ballot
			for _, m := range n.Ready().Messages {
				if m.Kind == MsgQuery && m.To == 4 {
					b = m.Ballot
				}
			}
			n.Step(t0, Message{Kind: MsgKnow, From: 4, To: 3, Move: mv, Ballot: b, Confirmed: true})
			rd := n.Ready()
			var got []Outcome
			for _, m := range rd.Messages {
				if m.Kind == MsgDecided {
					got = append(got, m.Outcome)
				}
			}
			if len(got) != 2 || got[0] != c.want || got[1] != c.want {
				t.Fatalf("decided %v, want %v to both", got, c.want)
			}
			if (c.want == Commit) != (len(rd.Locations) == 1) {
				t.Fatalf("locations %v", rd.Locations)
			}
		})
	}
}

// TestArbiterBound: made-up moves cannot grow an arbiter without bound.
func TestArbiterBound(t *testing.T) {
	n := New(Config{Node: 3, Incarnation: 1, MaxMoves: 1})
	n.Start(t0, 1, []uint32{1, 2, 3})
	for i := range 1000 {
		mv := Move{ID: ID{Source: 2, Inc: 1, N: uint64(i + 1)}, CPID: uint64(i), Origin: 3, Source: 2, Target: 1, Mech: CRIU}
		n.Step(t0, Message{Kind: MsgDecide, From: 2, To: 3, Move: mv, Outcome: Commit})
	}
	if len(n.arbs) != arbsPerMove {
		t.Fatalf("%d arbiter records, want %d", len(n.arbs), arbsPerMove)
	}
}

func TestMoves(t *testing.T) {
	w := newWorld(t, 3, Config{})
	w.addProc(101, 3, 1)
	w.addProc(102, 3, 1)
	a, _ := w.nodes[1].n.Migrate(w.now, 101, 3, 2, CRIU)
	b, _ := w.nodes[1].n.Migrate(w.now, 102, 3, 2, Cooperative)
	w.collect(w.nodes[1])
	w.finish(w.nextJob(1, Freeze), nil)
	w.deliverAt(w.next(1, 2))
	w.finish(w.nextJob(2, Restore), nil)
	w.deliverAt(w.next(2, 1)) // the confirmation: the source asks to commit
	w.deliverAt(w.next(1, 3)) // the arbiter queries
	want := map[uint32][]Status{
		1: {{Move: a, Role: "source", State: "deciding commit"}, {Move: b, Role: "source", State: "freezing"}},
		2: {{Move: a, Role: "target", State: "confirmed"}},
		3: {{Move: a, Role: "arbiter", State: "querying"}},
	}
	for id, ws := range want {
		got := w.nodes[id].n.Moves()
		if len(got) != len(ws) {
			t.Fatalf("n%d: %+v", id, got)
		}
		for i := range ws {
			if got[i] != ws[i] {
				t.Fatalf("n%d: %+v, want %+v", id, got[i], ws[i])
			}
		}
	}
}
