package node

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// The frames of a FuzzPeerSequence input: each is an op byte, then what
// the op reads.
const (
	seqHello      = iota // 3 bytes: incarnation, link, features
	seqToMaster          // uvarint length, a PeerMessage: on node 2's link to node 1
	seqFromMaster        // uvarint length, a PeerMessage: on node 1's link to node 2
	seqTick              // 1 byte: that many ticks pass
	seqLocal             // 2 bytes: a lock, convert or unlock of node 1's session
	seqOps
)

// seqFrame encodes one frame of a FuzzPeerSequence input.
func seqFrame(op byte, m *dlmpeerv1.PeerMessage, extra ...byte) []byte {
	out := []byte{op}
	if m != nil {
		b, err := proto.Marshal(m)
		if err != nil {
			panic(err)
		}
		out = binary.AppendUvarint(out, uint64(len(b)))
		out = append(out, b...)
	}
	return append(out, extra...)
}

// FuzzPeerSequence takes node 2's dlmd away from a settled two-node
// network and lets the fuzzer speak for it: a sequence of hellos (any
// incarnation, link, features; or none), decoded peer messages on both
// links (as the requester opening a link to node 1, and as the master
// node 1's link reaches), the clock and node 1's own client's locks. Node
// 2 is a member, so node 1 trusts what it says of its own locks and
// masters; still nothing may panic, node 1's tables must stay sound (no
// incompatible grant in a table it masters) after every step, and once
// clmsd declares node 2 DOWN and node 1 recovers without it, nothing of
// node 2 may stay: no lock, mastership, route, link, marker or request
// (its state was bounded by its presence). FuzzNetwork covers a peer that
// is not a member, among the whole cluster's traffic.
func FuzzPeerSequence(f *testing.F) {
	seeds := []*dlmpeerv1.PeerMessage{
		{Msg: &dlmpeerv1.PeerMessage_Request{Request: &dlmpeerv1.PeerRequest{Tag: 1, Epoch: 1, Op: dlmpeerv1.Op_OP_LOCK, Lockspace: "ls", Resource: []byte("a"), Client: 1, LockId: 1, Mode: dlmv1.Mode_MODE_EX}}},
		{Msg: &dlmpeerv1.PeerMessage_Request{Request: &dlmpeerv1.PeerRequest{Tag: 2, Epoch: 1, Op: dlmpeerv1.Op_OP_CONVERT, Lockspace: "ls", Resource: []byte("a"), Client: 1, LockId: 1, Mode: dlmv1.Mode_MODE_NL, Flags: 2, Lvb: []byte("x")}}},
		{Msg: &dlmpeerv1.PeerMessage_OwnerExit{OwnerExit: &dlmpeerv1.OwnerExit{Client: 1}}},
		{Msg: &dlmpeerv1.PeerMessage_Marker{Marker: &dlmpeerv1.Marker{Epoch: 1, Round: 1, Node: 2}}},
		{Msg: &dlmpeerv1.PeerMessage_Copies{Copies: &dlmpeerv1.Copies{Epoch: 1, Lockspace: "ls", Locks: []*dlmpeerv1.CopyLock{{Resource: []byte("b"), State: 1, Granted: 6}}}}},
		{Msg: &dlmpeerv1.PeerMessage_Effect{Effect: &dlmpeerv1.PeerEffect{Lockspace: "ls", Kind: 1, LockId: 1}}, Seq: 1, Ack: 3},
		{Msg: &dlmpeerv1.PeerMessage_Marker{Marker: &dlmpeerv1.Marker{Epoch: 1, Round: 2, Node: 2, PongAges: []*dlmpeerv1.PongAge{{Node: 3, AgeNanos: 5}}}}},
		{Msg: &dlmpeerv1.PeerMessage_Ping{Ping: &dlmpeerv1.Ping{SentNanos: 7}}},
		{Msg: &dlmpeerv1.PeerMessage_Lookup{Lookup: &dlmpeerv1.Lookup{Tag: 3, Epoch: 1, Lockspace: "ls", Resource: []byte("x")}}},
		{Msg: &dlmpeerv1.PeerMessage_LookupReply{LookupReply: &dlmpeerv1.LookupReply{Tag: 1, Master: 2}}},
		{Msg: &dlmpeerv1.PeerMessage_LookupReply{LookupReply: &dlmpeerv1.LookupReply{Tag: 1, Master: 1}}},
		{Msg: &dlmpeerv1.PeerMessage_LookupReply{LookupReply: &dlmpeerv1.LookupReply{Tag: 1, Status: dlmv1.Status_STATUS_INVALID}}},
		{Msg: &dlmpeerv1.PeerMessage_Remove{Remove: &dlmpeerv1.Remove{Epoch: 1, Lockspace: "ls", Resource: []byte("x")}}},
		{Msg: &dlmpeerv1.PeerMessage_Copies{Copies: &dlmpeerv1.Copies{Epoch: 1, Lockspace: "ls", Dir: []*dlmpeerv1.DirEntry{{Resource: []byte("d"), Master: 2}}}}},
		{Msg: &dlmpeerv1.PeerMessage_Reply{Reply: &dlmpeerv1.PeerReply{Tag: 1, Seq: 1, Effect: &dlmpeerv1.PeerEffect{Lockspace: "ls", Kind: 1, Resource: []byte("c"), Client: 1, LockId: 1, Mode: dlmv1.Mode_MODE_EX, Token: 9}}}},
		{Msg: &dlmpeerv1.PeerMessage_Leave{Leave: &dlmpeerv1.Leave{Incarnation: 1}}},
	}
	for _, m := range seeds {
		f.Add(seqFrame(seqToMaster, m))
		f.Add(seqFrame(seqFromMaster, m))
	}
	// Sequences: a hello of a new dlmd, then requests; node 1's client
	// locks a resource node 2 masters, and a fake master answers.
	f.Add(append(append(seqFrame(seqHello, nil, 2, 1, 1), seqFrame(seqToMaster, seeds[0])...), seqFrame(seqToMaster, seeds[1])...))
	f.Add(append(append(append(seqFrame(seqLocal, nil, 2, 6), seqFrame(seqTick, nil, 3)...), seqFrame(seqFromMaster, seeds[14])...), seqFrame(seqFromMaster, seeds[5])...))
	f.Add(append(append(seqFrame(seqToMaster, seeds[3]), seqFrame(seqToMaster, seeds[4])...), seqFrame(seqToMaster, seeds[6])...))
	// Markers for a later epoch than node 1's view: kept, but only the
	// latest (before, every one was).
	later := func(round uint32) *dlmpeerv1.PeerMessage {
		return &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Marker{Marker: &dlmpeerv1.Marker{Epoch: 5, Round: round, Node: 2}}}
	}
	f.Add(append(append(seqFrame(seqToMaster, later(0)), seqFrame(seqToMaster, later(1))...), seqFrame(seqToMaster, later(2))...))
	f.Fuzz(func(t *testing.T, data []byte) {
		runPeerSequence(t, data)
	})
}

// runPeerSequence runs one FuzzPeerSequence input.
func runPeerSequence(t *testing.T, data []byte) {
	nw := newNetwork(t, 2, time.Second, 2*time.Second, nil)
	nw.run(200 * time.Millisecond)
	m1, m2 := nw.nodes[1], nw.nodes[2]
	n := m1.n
	// Node 2's dlmd is the fuzzer's from now on: nothing of the real one
	// reaches node 1 any more.
	m2.running = false
	nw.queue = nil
	sess := n.OpenSession(nw.now, 100, lockspace.Cred{UID: 1000, GID: 1000})
	var trace []string
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\nsteps:\n%s", append(args, tail(trace, 40))...)
	}
	inc, link := m1.attached[2].Inc, m1.attached[2].ID
	resources := []string{"a", "b", "c", "d"}
	modes := []dlmv1.Mode{dlmv1.Mode_MODE_NL, dlmv1.Mode_MODE_CR, dlmv1.Mode_MODE_PR, dlmv1.Mode_MODE_PW, dlmv1.Mode_MODE_EX}
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	msgOf := func() (*dlmpeerv1.PeerMessage, bool) {
		l, k := binary.Uvarint(data)
		if k <= 0 || l > uint64(len(data)-k) {
			data = nil
			return nil, false
		}
		b := data[k : k+int(l)]
		data = data[k+int(l):]
		var m dlmpeerv1.PeerMessage
		return &m, proto.Unmarshal(b, &m) == nil
	}
	for tag := uint64(1); len(data) > 0; tag++ {
		what := ""
		switch next() % seqOps {
		case seqHello:
			i, l, feat := uint64(next()%4), uint64(next()%4), uint32(next()%4)
			if ok, _ := n.Attach(nw.now, 2, i, l, feat); ok {
				inc, link = i, l
			}
			what = fmt.Sprintf("hello inc=%d link=%d features=%d", i, l, feat)
		case seqToMaster:
			if m, ok := msgOf(); ok {
				n.Step(nw.now, Link{Node: 2, Inc: inc, ID: link}, m)
				what = "to node 1: " + describe(m)
			}
		case seqFromMaster:
			if m, ok := msgOf(); ok {
				if o := n.outs[2]; o != nil {
					n.Step(nw.now, Link{Node: 2, Out: true, Inc: n.Incarnation(), ID: o.id}, m)
					what = "from master 2: " + describe(m)
				}
			}
		case seqTick:
			for range int(next() % 32) {
				nw.step()
			}
			what = "ticks"
		case seqLocal:
			a, b := next(), next()
			var ids []uint64
			for id, cl := range n.locks {
				if cl.sess != nil && cl.sess.id == sess {
					ids = append(ids, uint64(id))
				}
			}
			switch {
			case a%3 == 0 || len(ids) == 0:
				n.Lock(nw.now, sess, tag, lockspace.Config{UID: 1000, GID: 1000}, &dlmv1.LockRequest{Lockspace: "ls",
					Resource: []byte(resources[b%4]), Mode: modes[int(b/4)%len(modes)], Flags: uint32(lockspace.NoQueue) * uint32(a/3%2)})
				what = fmt.Sprintf("lock %s", resources[b%4])
			case a%3 == 1:
				id := pickID(ids, b)
				n.Convert(nw.now, sess, tag, &dlmv1.ConvertRequest{LockId: id, Mode: modes[int(b/4)%len(modes)]})
				what = fmt.Sprintf("convert #%d", id)
			default:
				id := pickID(ids, b)
				n.Unlock(nw.now, sess, tag, &dlmv1.UnlockRequest{LockId: id})
				what = fmt.Sprintf("unlock #%d", id)
			}
		}
		nw.collect(m1)
		nw.queue = nil // what node 1 sends node 2 goes nowhere
		if what != "" {
			trace = append(trace, what)
		}
		if err := n.Check(); err != nil {
			fail("after %s: %v", what, err)
		}
		if len(n.early) > 1 {
			fail("after %s: %d markers kept for later, want at most one (node 2's latest)", what, len(n.early))
		}
	}
	// clmsd declares node 2 DOWN: node 1 recovers alone, after node 2's
	// lease, and must keep nothing of it.
	nw.membership(2, false)
	nw.run(5 * time.Second)
	nw.queue = nil
	if err := n.Check(); err != nil {
		fail("after node 2 went DOWN: %v", err)
	}
	if err := noTraceOf(n, 2, resources); err != nil {
		fail("after node 2 went DOWN: %v", err)
	}
}

// pickID picks a lock id by b: one of ids, or just past them.
func pickID(ids []uint64, b byte) uint64 {
	best := ids[0]
	for _, id := range ids {
		best = min(best, id)
	}
	return best + uint64(b%3)
}

// noTraceOf fails when n, settled after a recovery without node gone,
// still holds something of it: a lock in a table, a mastership or route,
// a link, a marker, a request or lookup that waits on it, work deferred.
func noTraceOf(n *Node, gone uint32, resources []string) error {
	switch {
	case n.rec != nil:
		return fmt.Errorf("still recovering %s", n.rec.id)
	case n.outs[gone] != nil || n.ins[gone] != nil:
		return fmt.Errorf("links to node %d remain", gone)
	case len(n.deferred) > 0 || len(n.retries) > 0:
		return fmt.Errorf("%d deferred, %d retries remain", len(n.deferred), len(n.retries))
	}
	for _, name := range sortedKeys(n.tables) {
		for _, res := range n.Dump(name) {
			for _, l := range res.Locks {
				if l.Node == gone {
					return fmt.Errorf("node %d's lock %d on %s/%s is in the table", gone, l.Id, name, res.Name)
				}
			}
		}
	}
	for _, p := range n.pend {
		if p.master == gone {
			return fmt.Errorf("request tag %d waits on node %d", p.tag, gone)
		}
	}
	for k, rt := range n.routes {
		if rt.node == gone {
			return fmt.Errorf("routes %v to node %d", k, gone)
		}
	}
	for k, l := range n.lookups {
		if l.dir == gone {
			return fmt.Errorf("lookup of %v waits on node %d", k, gone)
		}
	}
	kept := 0
	for _, e := range n.early {
		if e.from != gone {
			continue
		}
		// Bounded: one, for an epoch after the view's (the one that may
		// bring it back UP).
		if kept++; kept > 1 || e.m.GetEpoch() <= n.members.Epoch {
			return fmt.Errorf("keeps node %d's marker %d.%d at epoch %d (%d kept)", gone, e.m.GetEpoch(), e.m.GetRound(), n.members.Epoch, kept)
		}
	}
	for _, r := range resources {
		if m, ok := n.dirTable.Master(directory.Key{Lockspace: "ls", Resource: r}); ok && m == gone {
			return fmt.Errorf("the directory makes node %d the master of %s", gone, r)
		}
	}
	return nil
}
