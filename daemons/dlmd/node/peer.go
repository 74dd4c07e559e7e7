package node

import (
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// ---- peer messages ----

// Step handles a message that arrived on link at now. A message of a link
// that is not the current one (closed, or replaced since) is dropped: it
// was meant for an earlier dlmd of ours or came from an earlier one of the
// peer's.
func (n *Node) Step(now time.Time, link Link, msg *dlmpeerv1.PeerMessage) {
	n.now = now
	if n.leaving {
		return
	}
	if link.Out {
		if o := n.outs[link.Node]; o == nil || o.id != link.ID || link.Inc != n.cfg.Incarnation {
			return
		}
		n.onFromMaster(link.Node, msg)
		return
	}
	if in := n.ins[link.Node]; in == nil || in.inc != link.Inc || in.id != link.ID {
		return
	}
	n.onFromRequester(link.Node, msg)
}

// onFromMaster handles what a master sends on this node's link to it.
func (n *Node) onFromMaster(node uint32, msg *dlmpeerv1.PeerMessage) {
	switch m := msg.Msg.(type) {
	case *dlmpeerv1.PeerMessage_Reply:
		p := n.pend[m.Reply.GetTag()]
		if p == nil || p.master != node {
			return
		}
		n.dropPending(p)
		var own *lockspace.Effect
		if pe := m.Reply.GetEffect(); pe != nil {
			e := effectFromProto(n.self, pe)
			own = &e
		}
		n.onReply(p, m.Reply, own)
	case *dlmpeerv1.PeerMessage_Effect:
		n.onEffect(m.Effect.GetLockspace(), effectFromProto(n.self, m.Effect))
	case *dlmpeerv1.PeerMessage_MarkerAck:
		n.onMarkerAck(node, m.MarkerAck)
	case *dlmpeerv1.PeerMessage_LookupReply:
		n.onLookupReply(node, m.LookupReply)
	}
}

// onFromRequester handles what a peer sends on the link it opened. A dlmd
// that said goodbye sends nothing after it; whatever still comes on its
// link is dropped, so that nothing is granted to a dlmd that is gone.
func (n *Node) onFromRequester(from uint32, msg *dlmpeerv1.PeerMessage) {
	if inc, gone := n.gone[from]; gone && n.ins[from].inc == inc {
		return
	}
	if !n.members.Up[from] {
		n.fromNonMember(from, msg)
		return
	}
	switch m := msg.Msg.(type) {
	case *dlmpeerv1.PeerMessage_Request:
		n.onPeerRequest(from, m.Request)
	case *dlmpeerv1.PeerMessage_OwnerExit:
		if n.rec != nil {
			n.deferred = append(n.deferred, func() { n.onOwnerExit(from, m.OwnerExit.GetClient()) })
			return
		}
		n.onOwnerExit(from, m.OwnerExit.GetClient())
	case *dlmpeerv1.PeerMessage_Marker:
		n.onMarker(from, m.Marker)
	case *dlmpeerv1.PeerMessage_Copies:
		n.onCopies(from, m.Copies)
	case *dlmpeerv1.PeerMessage_CopiesDone:
		n.onCopiesDone(from, directory.ID{Epoch: m.CopiesDone.GetEpoch(), Round: m.CopiesDone.GetRound()})
	case *dlmpeerv1.PeerMessage_Lookup:
		n.onLookup(from, m.Lookup)
	case *dlmpeerv1.PeerMessage_Remove:
		n.onRemove(from, m.Remove)
	case *dlmpeerv1.PeerMessage_Leave:
		n.onLeave(from, m.Leave.GetIncarnation())
	}
}

// fromNonMember handles what a dlmd that is not UP in this node's view
// sends on the link it opened: nothing of it is taken. Its requests and
// lookups are answered RETRY (a node that has just come UP, and whose
// NODEUP has not reached this node yet, asks again after its recovery;
// one that is not a member never gets a lock, a mastership or a
// directory entry here); its marker is kept, one per node, for a
// recovery at a later epoch than this node's view, which may be the one
// that brings it UP; the rest is dropped. So a node outside the
// membership can neither hold or release locks, start recoveries, nor
// grow this node's state.
func (n *Node) fromNonMember(from uint32, msg *dlmpeerv1.PeerMessage) {
	const why = "not a member"
	switch m := msg.Msg.(type) {
	case *dlmpeerv1.PeerMessage_Request:
		n.toRequester(from, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Reply{Reply: &dlmpeerv1.PeerReply{
			Tag: m.Request.GetTag(), Status: dlmv1.Status_STATUS_RETRY, Message: why}}})
	case *dlmpeerv1.PeerMessage_Lookup:
		n.toRequester(from, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_LookupReply{LookupReply: &dlmpeerv1.LookupReply{
			Tag: m.Lookup.GetTag(), Status: dlmv1.Status_STATUS_RETRY, Message: why}}})
	case *dlmpeerv1.PeerMessage_Marker:
		if m.Marker.GetEpoch() <= n.members.Epoch {
			return // it was not UP at that epoch, nor since
		}
		n.dropEarly(from)
		n.early = append(n.early, earlyMarker{from: from, m: m.Marker})
	}
}

// dropEarly forgets the markers of node's earlier link.
func (n *Node) dropEarly(node uint32) {
	n.early = slices.DeleteFunc(n.early, func(e earlyMarker) bool { return e.from == node })
}

// Leave says goodbye, as this dlmd stops: it tells the members, so that
// they recover without it at once instead of fencing or waiting for its
// lease, ends its sessions and stops doing anything. Its clients' locks
// end with it.
func (n *Node) Leave(now time.Time) {
	n.now = now
	if n.leaving {
		return
	}
	n.log.Info("leaving: saying goodbye to the members")
	for _, m := range n.memberList() {
		if m != n.self {
			n.toMaster(m, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Leave{Leave: &dlmpeerv1.Leave{Incarnation: n.cfg.Incarnation}}})
		}
	}
	for _, id := range sortedNodes64(n.sessions) {
		n.sessions[id].closed, n.sessions[id].uncounted = true, true
		n.rd.Ended = append(n.rd.Ended, Ended{Session: id})
		delete(n.sessions, id)
	}
	// Its locks, tables, masteries and routes are gone as far as the
	// others are concerned: nothing here may grant or route again.
	n.tables = map[string]*lockspace.Lockspace{}
	n.locks, n.uidLocks, n.uidPending = map[lockspace.LockID]*copyLock{}, map[uint32]int{}, map[uint32]int{}
	n.pend = map[uint64]*pending{}
	n.mastered = map[directory.Key]*mastery{}
	n.routes = map[directory.Key]*route{}
	n.lookups = map[directory.Key]*lookup{}
	n.lookupTags = map[uint64]*lookup{}
	n.dirTable = directory.NewTable()
	n.tossQ, n.tossHead = nil, 0
	n.outbox, n.deferred, n.early, n.retries = nil, nil, nil, nil
	n.leaving = true
}

// onLeave handles a peer's goodbye: its dlmd (incarnation inc) is gone
// with its clients' locks; recover without it.
func (n *Node) onLeave(from uint32, inc uint64) {
	if in := n.ins[from]; in == nil || in.inc != inc {
		return
	}
	n.log.WithField("node", from).Info("a dlmd said goodbye: recovering without it")
	n.gone[from] = inc
	delete(n.rejoining, from)
	n.dropEarly(from)
	// The links stay: the goodbye is acknowledged on them, and a new dlmd
	// of the node replaces them.
	switch {
	case n.rec != nil:
		n.startRecovery(directory.ID{Epoch: n.rec.id.Epoch, Round: n.rec.id.Round + 1})
	case n.haveLast:
		n.startRecovery(directory.ID{Epoch: n.last.ID.Epoch, Round: n.last.ID.Round + 1})
	}
}

// ---- link events ----

// staleLinkWindow is how long after a node's new dlmd made a link here a
// stream of an earlier dlmd of the node (a lower incarnation) is taken
// for one that was still connecting when that dlmd fenced, and refused.
// Later, a lower incarnation is a restart whose clock went back.
const staleLinkWindow = 5 * time.Second

// Attach handles a requester's hello (node, its incarnation inc, its link
// id, its feature bits): it reports whether the link is accepted (false: a
// stream of an earlier dlmd of the node, overtaken by its new dlmd's) and
// whether it is a new link (the shell starts a new send log for it). A
// new dlmd on the node restarts the recovery in progress.
func (n *Node) Attach(now time.Time, node uint32, inc, id uint64, features uint32) (ok, renewed bool) {
	n.now = now
	in := n.ins[node]
	if in != nil && inc < in.inc && now.Sub(in.since) < staleLinkWindow {
		return false, false
	}
	if in == nil || in.inc != inc || in.id != id {
		newDlmd := in != nil && in.inc != inc
		if in != nil {
			n.closeIn(node)
		}
		in = &inLink{inc: inc, id: id, since: now}
		n.ins[node] = in
		renewed = true
		n.dropEarly(node)
		if old, ok := n.gone[node]; ok && old != inc {
			// The new dlmd of a node that said goodbye: it joins the
			// recovery in progress, which restarts to wait for it (or
			// the next, which its marker starts).
			delete(n.gone, node)
			n.rejoining[node] = true
			if n.rec != nil {
				n.log.WithFields(logrus.Fields{"node": node, "recovery": n.rec.id.String()}).Info("a dlmd that said goodbye is back: recovering again")
				n.startRecovery(directory.ID{Epoch: n.rec.id.Epoch, Round: n.rec.id.Round + 1})
			}
		} else if newDlmd {
			n.newIncarnation(node)
		}
	}
	in.features = features
	return true, renewed
}

// PeerRestarted handles a new dlmd met on this node's link to a master
// (the old one fenced or restarted): what the old one was sent is gone
// with it.
func (n *Node) PeerRestarted(now time.Time, link Link) {
	n.now = now
	if o := n.outs[link.Node]; o == nil || o.id != link.ID || link.Inc != n.cfg.Incarnation {
		return
	}
	n.newIncarnation(link.Node)
}

// newIncarnation runs the recovery in progress again, in the next round,
// when node has a new dlmd: the marker sent to the earlier one is gone
// with it, and what the recovery took from it (its acknowledgement,
// copies, end of copies) is stale. The new dlmd joins the new round; a
// recovery finished on the earlier dlmd's word would leave it waiting
// forever, or rebuild locks nobody holds.
func (n *Node) newIncarnation(node uint32) {
	if n.rec == nil || !slices.Contains(n.rec.barrier.Members, node) {
		return
	}
	n.log.WithFields(logrus.Fields{"node": node, "recovery": n.rec.id.String()}).Info("a new dlmd joins during the recovery: recovering again")
	n.startRecovery(directory.ID{Epoch: n.rec.id.Epoch, Round: n.rec.id.Round + 1})
}
