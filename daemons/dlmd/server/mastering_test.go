package server

import (
	"context"
	"testing"
	"time"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
)

// masterOf returns the node whose table holds locks on res (0: none).
func (c *testCluster) masterOf(ls, res string) uint32 {
	for _, li := range c.dump(ls) {
		if li.res == res {
			return li.master
		}
	}
	return 0
}

// masters reports whether node masters res, and whether res's directory
// node records a master for it.
func (c *testCluster) masters(t *testing.T, node uint32, ls, res string) (mastered, inDirectory bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := c.nodes[node].srv
	if err := s.call(ctx, func() { mastered, _ = s.core.Masters(ls, res) }); err != nil {
		t.Fatal(err)
	}
	d := c.nodes[directory.Master(c.nums, ls, res)].srv
	if err := d.call(ctx, func() { _, inDirectory = d.core.Masters(ls, res) }); err != nil {
		t.Fatal(err)
	}
	return mastered, inDirectory
}

// TestFirstRequesterMasters: the first node to lock a resource masters
// it, and the others' requests go there; once its last lock has been gone
// for the toss time the master gives it up, and the next requester masters
// it.
func TestFirstRequesterMasters(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{toss: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const ls = "first"
	for _, node := range c.nums {
		res := "own-" + string(rune('0'+node))
		l, err := c.client(ctx, node).Lock(ctx, ls, res, dlm.EX)
		if err != nil {
			t.Fatal(err)
		}
		if m := c.masterOf(ls, res); m != node {
			t.Fatalf("%s, first locked from node %d, is mastered on node %d", res, node, m)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Node 2 masters "shared"; node 1 and node 3 queue there.
	h, err := c.client(ctx, 2).Lock(ctx, ls, "shared", dlm.EX)
	if err != nil {
		t.Fatal(err)
	}
	// Fencing tokens: every EX grant on "shared" must be above the ones
	// before, through the toss and the new master too.
	var tokens []uint64
	tokens = append(tokens, h.Token())
	got := make(chan error, 2)
	gotTokens := make(chan uint64, 2)
	for _, node := range []uint32{1, 3} {
		cl := c.client(ctx, node)
		go func() {
			l, err := cl.Lock(ctx, ls, "shared", dlm.EX)
			if err == nil {
				gotTokens <- l.Token()
				err = l.Unlock(ctx)
			}
			got <- err
		}()
	}
	waitFor(t, 5*time.Second, "nodes 1 and 3 to queue on node 2", func() bool {
		n := 0
		for _, li := range c.dump(ls) {
			if li.res == "shared" && li.state == lockspace.StateWaiting {
				if li.master != 2 {
					t.Fatalf("node %d's request waits on node %d, not on the master, node 2", li.node, li.master)
				}
				n++
			}
		}
		return n == 2
	})
	if err := h.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, <-gotTokens)
	}

	// Unused for the toss time, node 2 gives "shared" up, at home and in
	// the directory; then node 3 is the first requester.
	waitFor(t, 5*time.Second, "node 2 to give up shared", func() bool {
		m, d := c.masters(t, 2, ls, "shared")
		return !m && !d
	})
	l, err := c.client(ctx, 3).Lock(ctx, ls, "shared", dlm.PR)
	if err != nil {
		t.Fatal(err)
	}
	if m := c.masterOf(ls, "shared"); m != 3 {
		t.Fatalf("shared, given up by node 2 and then locked from node 3, is mastered on node %d", m)
	}
	// That a held resource is never given up is in the scripts of
	// package node (testdata/scripts/mastering.txt), on a fake clock.
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if l.Token() != 0 {
		t.Fatalf("a PR grant has token %d", l.Token())
	}
	x, err := c.client(ctx, 3).Lock(ctx, ls, "shared", dlm.EX)
	if err != nil {
		t.Fatal(err)
	}
	tokens = append(tokens, x.Token())
	if tokens[0] == 0 || tokens[1] <= tokens[0] || tokens[2] <= tokens[1] || tokens[3] <= tokens[2] {
		t.Fatalf("EX tokens on shared, the last from its new master: %v, want growing", tokens)
	}
}

// TestLostMasterIsReplacedAndNodeUpMovesNothing: when the master of a
// resource is lost, the survivors rebuild it on the hash winner among
// them, keeping their granted locks and queue; when the lost node comes
// back, no resource moves to it.
func TestLostMasterIsReplacedAndNodeUpMovesNothing(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const ls = "remaster"
	r := c.resourceMasteredOn(t, ctx, ls, 3, "res")
	mine := c.resourceMasteredOn(t, ctx, ls, 1, "mine")
	// A token node 3 grants to its own client: no survivor sees it.
	own, err := c.client(ctx, 3).Lock(ctx, ls, r, dlm.EX)
	if err != nil {
		t.Fatal(err)
	}
	lostToken := own.Token()
	if err := own.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	pr, err := c.client(ctx, 1).Lock(ctx, ls, r, dlm.PR)
	if err != nil {
		t.Fatal(err)
	}
	c2 := c.client(ctx, 2)
	granted := make(chan grant, 1)
	go func() {
		l, err := c2.Lock(ctx, ls, r, dlm.EX)
		granted <- grant{l, err, time.Now()}
	}()
	c.waitQueued(t, ls, r, 2)

	c.net.partition(3)
	c.nodes[1].srv.Membership(2, 3, false)
	c.nodes[2].srv.Membership(2, 3, false)
	want := directory.Master([]uint32{1, 2}, ls, r)
	waitFor(t, 5*time.Second, "the survivors to rebuild "+r, func() bool {
		for _, li := range c.dump(ls) {
			if li.res == r && li.master != 3 {
				return true
			}
		}
		return false
	})
	var sawPR, sawEX bool
	for _, li := range c.dump(ls) {
		if li.res != r || li.master == 3 {
			continue
		}
		if li.master != want {
			t.Fatalf("%s was rebuilt on node %d, want node %d (the hash winner among the survivors)", r, li.master, want)
		}
		switch {
		case li.node == 1 && li.state == lockspace.StateGranted:
			sawPR = true
		case li.node == 2 && li.state == lockspace.StateWaiting:
			sawEX = true
		}
	}
	if !sawPR || !sawEX {
		t.Fatalf("after the rebuild: node 1's PR granted %v, node 2's EX waiting %v:\n%s", sawPR, sawEX, c.describe(ls))
	}
	if err := pr.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-granted:
		if g.err != nil {
			t.Fatal(g.err)
		}
		if g.l.Token() <= lostToken {
			t.Fatalf("node 2's EX from the new master has token %d, not above %d, which lost node 3 granted", g.l.Token(), lostToken)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("node 2's EX was not granted after node 1's unlock")
	}

	// Node 3 comes back: nothing moves to it.
	c.net.heal(3)
	c.nodes[1].srv.Membership(3, 3, true)
	c.nodes[2].srv.Membership(3, 3, true)
	c.nodes[3].srv.Membership(2, 3, false)
	c.nodes[3].srv.Membership(3, 3, true)
	c.lockFresh(t, ctx, 3, ls, "after-heal", "node 3 after the heal")
	if m := c.masterOf(ls, r); m != want {
		t.Fatalf("%s moved from node %d to node %d when node 3 came back", r, want, m)
	}
	if m := c.masterOf(ls, mine); m != 1 {
		t.Fatalf("%s moved from node 1 to node %d when node 3 came back", mine, m)
	}
}
