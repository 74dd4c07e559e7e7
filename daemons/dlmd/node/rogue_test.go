package node

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// rogue is a dlmd the network's nodes can hear from that is not one of
// them: a node whose number is in no membership view (never UP; the
// cluster's certificates let a node speak only as itself, so a node that
// is not a member can still open channels, as itself). Its hellos and
// messages, in any order and with any content, come from the fuzzer. No
// honest node may let it break mutual exclusion, grant what it asks, make
// it a master, stop the cluster from settling, or keep state of it.
type rogue struct {
	id uint32
	// inc and link name its link to each node, as its last hello did.
	inc, link map[uint32]uint64
}

func newRogue(id uint32) *rogue {
	return &rogue{id: id, inc: map[uint32]uint64{}, link: map[uint32]uint64{}}
}

// step makes the rogue do one thing to a running node of nw, chosen by
// choose, and returns what it did (for the trace); "" when nothing.
func (r *rogue) step(nw *network, choose func(int) int) string {
	var running []*member
	for _, m := range nw.sorted() {
		if m.running {
			running = append(running, m)
		}
	}
	if len(running) == 0 {
		return ""
	}
	m := running[choose(len(running))]
	switch choose(8) {
	case 0:
		// A hello, of a new dlmd or link or not, with any lease.
		inc, link := uint64(1+choose(3)), uint64(1+choose(3))
		ok, _ := m.n.Attach(nw.now, r.id, inc, link, uint32(choose(4)))
		m.n.HeardLease(r.id, []time.Duration{0, time.Second, MaxLease}[choose(3)], []time.Duration{0, 5 * time.Second}[choose(2)])
		if ok {
			r.inc[m.id], r.link[m.id] = inc, link
		}
		return fmt.Sprintf("rogue hello to %d inc=%d link=%d ok=%v", m.id, inc, link, ok)
	case 1:
		// Bytes of the fuzzer's, if they decode.
		b := make([]byte, choose(48))
		for i := range b {
			b[i] = byte(choose(256))
		}
		var msg dlmpeerv1.PeerMessage
		if proto.Unmarshal(b, &msg) != nil {
			return ""
		}
		return r.send(nw, m, &msg, choose)
	case 2:
		// As the master this node may (wrongly) believe it is.
		return r.answer(nw, m, choose)
	default:
		return r.send(nw, m, r.message(m, choose), choose)
	}
}

// send steps msg into m as the rogue's, on the link its last hello named
// (or on one it never made).
func (r *rogue) send(nw *network, m *member, msg *dlmpeerv1.PeerMessage, choose func(int) int) string {
	l := Link{Node: r.id, Inc: r.inc[m.id], ID: r.link[m.id]}
	if choose(8) == 0 {
		l.Inc++
	}
	m.n.Step(nw.now, l, msg)
	nw.collect(m)
	return fmt.Sprintf("rogue to %d: %s", m.id, describe(msg))
}

// answer steps into m, as the rogue master of a resource, a reply to one
// of m's requests to it, an effect on one of m's locks, or a lookup reply.
func (r *rogue) answer(nw *network, m *member, choose func(int) int) string {
	o := m.n.outs[r.id]
	if o == nil {
		return ""
	}
	l := Link{Node: r.id, Out: true, Inc: m.n.Incarnation(), ID: o.id}
	ids := slices.Sorted(func(yield func(lockspace.LockID) bool) {
		for id := range m.n.locks {
			if !yield(id) {
				return
			}
		}
	})
	var lockID uint64
	if len(ids) > 0 {
		lockID = uint64(ids[choose(len(ids))])
	}
	var msg *dlmpeerv1.PeerMessage
	switch choose(3) {
	case 0:
		tags := slices.Sorted(func(yield func(uint64) bool) {
			for t := range m.n.pend {
				if !yield(t) {
					return
				}
			}
		})
		if len(tags) == 0 {
			return ""
		}
		msg = &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Reply{Reply: &dlmpeerv1.PeerReply{Tag: tags[choose(len(tags))], Seq: uint64(choose(9))}}}
	case 1:
		msg = &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Effect{Effect: &dlmpeerv1.PeerEffect{Lockspace: "ls", Kind: dlmpeerv1.EffectKind_EFFECT_KIND_GRANTED,
			Resource: []byte(rogueResources[choose(len(rogueResources))]), LockId: lockID, Mode: dlmv1.Mode_MODE_EX, Seq: uint64(choose(9)), Token: uint64(choose(1 << 20))}}}
	default:
		msg = &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_LookupReply{LookupReply: &dlmpeerv1.LookupReply{Tag: uint64(choose(20)), Master: uint32(choose(5))}}}
	}
	m.n.Step(nw.now, l, msg)
	nw.collect(m)
	return fmt.Sprintf("rogue master to %d: %s", m.id, describe(msg))
}

var rogueResources = []string{"a", "b", "c", "d"}

// message makes a peer message of the kinds a requester sends, with
// fields m would take for a member's: its recovery ids, the network's
// lockspace and resources, small lock ids and tags.
func (r *rogue) message(m *member, choose func(int) int) *dlmpeerv1.PeerMessage {
	ids := []directory.ID{m.n.last.ID, {Epoch: m.n.last.ID.Epoch, Round: m.n.last.ID.Round + 1}, {Epoch: m.n.members.Epoch + 1}}
	if m.n.rec != nil {
		ids = append(ids, m.n.rec.id)
	}
	id := ids[choose(len(ids))]
	res := []byte(rogueResources[choose(len(rogueResources))])
	modes := []dlmv1.Mode{dlmv1.Mode_MODE_NL, dlmv1.Mode_MODE_PR, dlmv1.Mode_MODE_PW, dlmv1.Mode_MODE_EX}
	switch choose(9) {
	case 0, 1:
		return &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Request{Request: &dlmpeerv1.PeerRequest{
			Tag: uint64(choose(20)), Epoch: id.Epoch, Round: id.Round, Op: dlmpeerv1.Op(1 + choose(4)),
			Lockspace: "ls", Config: &dlmpeerv1.LockspaceConfig{Uid: 1000, Gid: 1000}, Resource: res,
			Client: uint64(1 + choose(3)), Pid: 7, LockId: uint64(1 + choose(6)), Mode: modes[choose(len(modes))],
			Flags: []uint32{0, uint32(lockspace.NoQueue), uint32(lockspace.Persistent)}[choose(3)], Cred: &dlmpeerv1.Cred{Uid: 1000, Gid: 1000}}}}
	case 2:
		return &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Lookup{Lookup: &dlmpeerv1.Lookup{
			Tag: uint64(choose(20)), Epoch: id.Epoch, Round: id.Round, Lockspace: "ls", Resource: res}}}
	case 3:
		return &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Remove{Remove: &dlmpeerv1.Remove{
			Epoch: id.Epoch, Round: id.Round, Lockspace: "ls", Resource: res, Token: uint64(choose(1 << 20))}}}
	case 4:
		return &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Marker{Marker: &dlmpeerv1.Marker{
			Epoch: id.Epoch, Round: id.Round, Node: r.id, Incarnation: r.inc[m.id] + uint64(choose(2)),
			PongAges: []*dlmpeerv1.PongAge{{Node: uint32(1 + choose(3)), AgeNanos: int64(choose(1 << 30)), LeaseNanos: int64(choose(1 << 30))}}}}}
	case 5:
		return &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Copies{Copies: &dlmpeerv1.Copies{
			Epoch: id.Epoch, Round: id.Round, Lockspace: "ls", Config: &dlmpeerv1.LockspaceConfig{Uid: 1000, Gid: 1000},
			Locks: []*dlmpeerv1.CopyLock{{Resource: res, Client: uint64(1 + choose(3)), LockId: uint64(1 + choose(6)),
				State: dlmv1.LockState_LOCK_STATE_GRANTED, Granted: modes[choose(len(modes))], Token: uint64(choose(1 << 20))}},
			Dir: []*dlmpeerv1.DirEntry{{Resource: res, Master: []uint32{r.id, 1, 2}[choose(3)]}}}}}
	case 6:
		return &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_CopiesDone{CopiesDone: &dlmpeerv1.CopiesDone{Epoch: id.Epoch, Round: id.Round}}}
	case 7:
		return &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_OwnerExit{OwnerExit: &dlmpeerv1.OwnerExit{Client: uint64(1 + choose(3))}}}
	default:
		return &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Leave{Leave: &dlmpeerv1.Leave{Incarnation: r.inc[m.id]}}}
	}
}

// checkNoTrace fails when, in a settled network, a node still holds
// anything of the rogue's: a lock it owns in a master's table, a master
// entry naming it, a route or link to it, a marker of its kept for later.
func (r *rogue) checkNoTrace(nw *network) error {
	for _, m := range nw.sorted() {
		n := m.n
		for _, name := range sortedKeys(n.tables) {
			for _, res := range n.Dump(name) {
				for _, l := range res.Locks {
					if l.Node == r.id {
						return fmt.Errorf("node %d: the rogue's lock %d on %s/%s is in the table", m.id, l.Id, name, res.Name)
					}
				}
			}
		}
		for k, rt := range n.routes {
			if rt.node == r.id {
				return fmt.Errorf("node %d: routes %v to the rogue", m.id, k)
			}
		}
		if n.outs[r.id] != nil {
			return fmt.Errorf("node %d: has a link to the rogue", m.id)
		}
		kept := 0
		for _, e := range n.early {
			if e.from != r.id {
				continue
			}
			// Bounded: one, for a later epoch than the view's (the
			// one that might bring it UP).
			if kept++; kept > 1 || e.m.GetEpoch() <= n.members.Epoch {
				return fmt.Errorf("node %d: keeps the rogue's marker %d.%d at epoch %d (%d kept)", m.id, e.m.GetEpoch(), e.m.GetRound(), n.members.Epoch, kept)
			}
		}
		for _, res := range rogueResources {
			k := directory.Key{Lockspace: "ls", Resource: res}
			if nd, ok := n.dirTable.Master(k); ok && nd == r.id {
				return fmt.Errorf("node %d: its directory makes the rogue the master of %v", m.id, k)
			}
		}
	}
	return nil
}

// TestNonMemberIsIgnored: a dlmd that is not UP in the view (node 3 of a
// two-node cluster) opens a link to node 1 and sends what a member would,
// with node 1's current recovery id. Node 1 answers its lookup and its
// lock request RETRY, and takes nothing: no lock of node 3 in its table,
// no directory entry making node 3 a master, no recovery started by its
// marker or its goodbye. Before, node 1 made node 3 the master of a
// resource it looked up (so the members' requests for it would have gone
// to node 3), granted its lock on a resource node 1 masters (which then
// stayed: a node that is never UP is never recovered away), and
// recovered again at every marker.
func TestNonMemberIsIgnored(t *testing.T) {
	nw := newNetwork(t, 2, time.Second, 10*time.Second, nil)
	nw.run(200 * time.Millisecond)
	n1 := nw.nodes[1].n
	id := n1.last.ID
	if n1.rec != nil || !n1.haveLast {
		t.Fatalf("node 1 is not settled: recovering %v", n1.rec != nil)
	}
	// res and free have node 1 for directory node; node 1 masters res
	// (a session of its own holds NL on it), nobody masters free.
	var names []string
	for i := 0; len(names) < 2; i++ {
		if r := fmt.Sprintf("r%d", i); directory.Master(n1.dir, "ls", r) == 1 {
			names = append(names, r)
		}
	}
	res, free := names[0], names[1]
	s := n1.OpenSession(nw.now, 100, lockspace.Cred{UID: 1000, GID: 1000})
	n1.Lock(nw.now, s, 1, lockspace.Config{UID: 1000, GID: 1000}, &dlmv1.LockRequest{Lockspace: "ls", Resource: []byte(res), Mode: dlmv1.Mode_MODE_NL})
	nw.collect(nw.nodes[1])
	nw.stabilize(false)
	if n1.mastered[directory.Key{Lockspace: "ls", Resource: res}] == nil {
		t.Fatalf("node 1 does not master %s", res)
	}
	const rogueID = 3
	if ok, _ := n1.Attach(nw.now, rogueID, 1, 1, FeatEffectInReply); !ok {
		t.Fatal("the hello was refused")
	}
	l := Link{Node: rogueID, Inc: 1, ID: 1}
	step := func(m *dlmpeerv1.PeerMessage) []*dlmpeerv1.PeerMessage {
		n1.Step(nw.now, l, m)
		var out []*dlmpeerv1.PeerMessage
		for _, msg := range n1.Ready().Messages {
			if msg.Link.Node == rogueID {
				out = append(out, msg.Msg)
			}
		}
		return out
	}
	replies := step(&dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Lookup{Lookup: &dlmpeerv1.Lookup{
		Tag: 2, Epoch: id.Epoch, Round: id.Round, Lockspace: "ls", Resource: []byte(free)}}})
	if len(replies) != 1 || replies[0].GetLookupReply().GetStatus() != dlmv1.Status_STATUS_RETRY {
		t.Errorf("node 1's answer to the lookup: %v, want one RETRY", replies)
	}
	if m, ok := n1.dirTable.Master(directory.Key{Lockspace: "ls", Resource: free}); ok {
		t.Errorf("node 1's directory names node %d the master of %s", m, free)
	}
	replies = step(&dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Request{Request: &dlmpeerv1.PeerRequest{
		Tag: 1, Epoch: id.Epoch, Round: id.Round, Op: dlmpeerv1.Op_OP_LOCK, Lockspace: "ls", Resource: []byte(res),
		Config: &dlmpeerv1.LockspaceConfig{Uid: 1000, Gid: 1000}, Client: 1, LockId: 1, Mode: dlmv1.Mode_MODE_EX,
		Cred: &dlmpeerv1.Cred{Uid: 1000, Gid: 1000}}}})
	if len(replies) != 1 || replies[0].GetReply().GetStatus() != dlmv1.Status_STATUS_RETRY || replies[0].GetReply().GetEffect() != nil {
		t.Errorf("node 1's answer to the lock request: %v, want one RETRY reply", replies)
	}
	for _, r := range n1.Dump("ls") {
		for _, l := range r.Locks {
			if l.Node == rogueID {
				t.Errorf("node 1's table holds the non-member's lock on %s: %v", r.Name, l)
			}
		}
	}
	for _, m := range []*dlmpeerv1.PeerMessage{
		{Msg: &dlmpeerv1.PeerMessage_Marker{Marker: &dlmpeerv1.Marker{Epoch: id.Epoch, Round: id.Round + 1, Node: rogueID, Incarnation: 1}}},
		{Msg: &dlmpeerv1.PeerMessage_Marker{Marker: &dlmpeerv1.Marker{Epoch: id.Epoch, Round: id.Round, Node: rogueID, Incarnation: 2}}},
		{Msg: &dlmpeerv1.PeerMessage_Leave{Leave: &dlmpeerv1.Leave{Incarnation: 1}}},
	} {
		step(m)
		if n1.rec != nil {
			t.Fatalf("node 1 started recovery %v on the non-member's %s", n1.rec.id, describe(m))
		}
	}
	if len(n1.early) != 0 {
		t.Errorf("node 1 keeps %d markers of the non-member's for the current epoch", len(n1.early))
	}
}
