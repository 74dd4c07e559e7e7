package pgroup

import (
	"errors"
	"testing"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

// lookup is where c says x runs.
func lookup(t *testing.T, c *Core, x cpid.CPID) Answer {
	t.Helper()
	if err := c.Step(t0, Lookup{ID: 1, CPID: x}); err != nil {
		t.Fatal(err)
	}
	for _, a := range c.Ready().Answers {
		if a.ID == 1 {
			return a
		}
	}
	t.Fatalf("no answer for %s", x)
	return Answer{}
}

// TestMoved follows a process of origin 1 that moves 2 -> 3 -> 1: the
// origin's table follows it (the pid once known), the node it moves to
// runs it, and the Ended of the node it left no longer ends it.
func TestMoved(t *testing.T) {
	x := cpid.MustMake(1, 40)
	origin, n2, n3 := New(Config{Self: 1}), New(Config{Self: 2}), New(Config{Self: 3})
	for _, c := range []*Core{origin, n2, n3} {
		c.Start(1, []uint32{1, 2, 3})
	}
	p := Proc{CPID: x, Node: 2, PID: 7, PGID: cpid.MustMake(1, 30), UID: 1000}
	for _, c := range []*Core{origin, n2} {
		if err := c.Step(t0, Started{Proc: p}); err != nil {
			t.Fatal(err)
		}
	}
	// The arbiter (the origin) records the move, its pid unknown.
	if err := origin.Step(t0, Moved{Proc: Proc{CPID: x, Node: 3}}); err != nil {
		t.Fatal(err)
	}
	if a := lookup(t, origin, x); !a.Found || a.Proc.Node != 3 || a.Proc.PID != 0 || a.Proc.PGID != p.PGID {
		t.Errorf("after the move the origin says %+v", a)
	}
	// The target runs it.
	at3 := p
	at3.Node, at3.PID = 3, 9
	if err := n3.Step(t0, Moved{Proc: at3}); err != nil {
		t.Fatal(err)
	}
	if a := lookup(t, n3, x); a.Redirect != 1 {
		t.Errorf("the target redirects to %d, want the origin", a.Redirect)
	}
	// The origin learns the pid; the old copy's end changes nothing.
	if err := origin.Step(t0, Moved{Proc: Proc{CPID: x, Node: 3, PID: 9}}); err != nil {
		t.Fatal(err)
	}
	if err := n2.Step(t0, Ended{CPID: x, Node: 2}); err != nil {
		t.Fatal(err)
	}
	for _, s := range n2.Ready().Sends {
		if s.Ended == nil || s.To != 1 {
			t.Fatalf("the source sent %+v", s)
		}
		if err := origin.Step(t0, *s.Ended); err != nil {
			t.Fatal(err)
		}
	}
	if a := lookup(t, origin, x); !a.Found || a.Proc.Node != 3 || a.Proc.PID != 9 {
		t.Errorf("after the source's Ended the origin says %+v", a)
	}
	// Back to the origin itself: it runs it, and its end ends it.
	home := p
	home.Node, home.PID = 1, 11
	if err := origin.Step(t0, Moved{Proc: home}); err != nil {
		t.Fatal(err)
	}
	if a := lookup(t, origin, x); !a.Found || a.Proc.Node != 1 || a.Proc.PID != 11 {
		t.Errorf("back home the origin says %+v", a)
	}
	if err := origin.Step(t0, Ended{CPID: x, Node: 1}); err != nil {
		t.Fatal(err)
	}
	if a := lookup(t, origin, x); a.Found {
		t.Errorf("after its end the origin still says %+v", a)
	}
	for _, tc := range []struct {
		name string
		p    Proc
	}{
		{"no cpid", Proc{Node: 3}},
		{"no node", Proc{CPID: x}},
		{"here without a pid", Proc{CPID: cpid.MustMake(2, 5), Node: 1}},
		{"a negative pid", Proc{CPID: x, Node: 3, PID: -1}},
	} {
		if err := origin.Step(t0, Moved{Proc: tc.p}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Step = %v, want ErrInvalid", tc.name, err)
		}
	}
}

// TestLateEnded: the Ended a node sends when a process ends reaches the
// origin after the exec that waited for it ended it there, and after a
// new exec of the same caller was given the same cpid on the same node:
// it names the old pid, and leaves the new process's record alone.
func TestLateEnded(t *testing.T) {
	x := cpid.MustMake(1, 40)
	origin, n2 := New(Config{Self: 1}), New(Config{Self: 2})
	for _, c := range []*Core{origin, n2} {
		c.Start(1, []uint32{1, 2})
	}
	old := Proc{CPID: x, Node: 2, PID: 7}
	for _, c := range []*Core{origin, n2} {
		if err := c.Step(t0, Started{Proc: old}); err != nil {
			t.Fatal(err)
		}
	}
	// It ends: node 2 tells the origin, which its exec told already.
	if err := n2.Step(t0, Ended{CPID: x, Node: 2}); err != nil {
		t.Fatal(err)
	}
	late := n2.Ready().Sends
	if len(late) != 1 || late[0].Ended == nil || late[0].Ended.PID != 7 {
		t.Fatalf("node 2 sent %+v, want the Ended of pid 7", late)
	}
	if err := origin.Step(t0, Ended{CPID: x, Node: 2}); err != nil {
		t.Fatal(err)
	}
	// The caller's next program gets the cpid again, on node 2.
	if err := origin.Step(t0, Started{Proc: Proc{CPID: x, Node: 2, PID: 8}}); err != nil {
		t.Fatal(err)
	}
	if err := origin.Step(t0, *late[0].Ended); err != nil {
		t.Fatal(err)
	}
	if a := lookup(t, origin, x); !a.Found || a.Proc.PID != 8 {
		t.Errorf("after the late Ended of pid 7 the origin says %+v, want pid 8 on node 2", a)
	}
}
