package election

import (
	"strings"
	"testing"
	"time"
)

// TestPrefer: with a placement rule (openssi-keepalived's), a node
// granted the lock without a hand-over to an UP node passes it to the
// preferred node once, keeping whether the release was clean; a record
// naming this node, or one it passed itself, is taken.
func TestPrefer(t *testing.T) {
	pref := uint32(2)
	for _, tc := range []struct {
		name  string
		grant func(c *Core, now time.Time)
		want  string
		state State
	}{
		{"a first grant goes to the preferred node, not clean", func(c *Core, now time.Time) { c.Granted(now, [RecordLen]byte{}, false) },
			"release-lock clean=false holder=1 next=2 move=1/1, request-lock", Waiting},
		{"a clean release naming nobody goes on clean", func(c *Core, now time.Time) { c.Granted(now, Record{Clean: true, Holder: 3}.Encode(), true) },
			"release-lock clean=true holder=1 next=2 move=1/1, request-lock", Waiting},
		{"a hand-over to this node is taken", func(c *Core, now time.Time) {
			c.Granted(now, Record{Clean: true, Holder: 3, Next: 1, MoveBy: 3, Move: 1}.Encode(), true)
		}, "start", Running},
		{"a hand-over to an UP node is passed on as it is", func(c *Core, now time.Time) {
			c.Granted(now, Record{Clean: true, Holder: 3, Next: 3, MoveBy: 3, Move: 1}.Encode(), true)
		}, "release-lock clean=true holder=3 next=3 move=3/1, request-lock", Waiting},
		{"a hand-over to a DOWN node follows the rule", func(c *Core, now time.Time) {
			c.Granted(now, Record{Clean: true, Holder: 3, Next: 4, MoveBy: 3, Move: 1}.Encode(), true)
		}, "release-lock clean=true holder=1 next=2 move=1/1, request-lock", Waiting},
		{"an unclean record naming this node waits the stop timeout", func(c *Core, now time.Time) {
			c.Granted(now, Record{Holder: 3, Next: 1, MoveBy: 3, Move: 1}.Encode(), true)
		}, "", Holding},
	} {
		c := New(Config{Self: 1, StopTimeout: stopTimeout, Prefer: func(up map[uint32]bool) uint32 { return pref }})
		for _, n := range []uint32{1, 2, 3} {
			c.SetUp(n, true)
		}
		c.Start(t0)
		c.UnitsStopped(t0)
		c.Ready()
		tc.grant(c, t0)
		var got []string
		for _, a := range c.Ready() {
			got = append(got, a.String())
		}
		if g := strings.Join(got, ", "); g != tc.want {
			t.Errorf("%s: actions %q, want %q", tc.name, g, tc.want)
		}
		if st, _ := c.State(); st != tc.state {
			t.Errorf("%s: state %v, want %v", tc.name, st, tc.state)
		}
	}

	// A pass that comes back (the preferred node did not queue) is taken,
	// after the stop timeout since it was not clean.
	c := New(Config{Self: 1, StopTimeout: stopTimeout, Prefer: func(map[uint32]bool) uint32 { return pref }})
	c.SetUp(1, true)
	c.SetUp(2, true)
	c.Start(t0)
	c.UnitsStopped(t0)
	c.Granted(t0, [RecordLen]byte{}, false)
	var back Action
	for _, a := range c.Ready() {
		if a.Kind == ReleaseLock {
			back = a
		}
	}
	c.Granted(t0.Add(time.Second), back.Value, true)
	if st, _ := c.State(); st != Holding {
		t.Fatalf("a pass that came back: state %v, want holding", st)
	}
	c.Tick(t0.Add(time.Second + stopTimeout))
	if st, _ := c.State(); st != Running {
		t.Fatalf("after the stop timeout: state %v, want running", st)
	}
	// The preferred node is this one, or DOWN: taken here.
	for _, p := range []uint32{1, 5, 0} {
		c := New(Config{Self: 1, StopTimeout: stopTimeout, Prefer: func(map[uint32]bool) uint32 { return p }})
		c.SetUp(1, true)
		c.Start(t0)
		c.UnitsStopped(t0)
		c.Ready()
		c.Granted(t0, Record{Clean: true, Holder: 3}.Encode(), true)
		if st, _ := c.State(); st != Running {
			t.Errorf("prefer %d: state %v, want running", p, st)
		}
	}
}
