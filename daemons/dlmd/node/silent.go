package node

import (
	"fmt"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// Silent peers. The lease fences a node that hears from no majority, but
// one master that is up and silent (its dlmd traffic black-holed while
// clmsd keeps it UP) leaves the majority fine and changes no membership:
// no recovery moves its resources, and what waits on it would wait until
// the caller gave up. So a master (or directory node) that has not
// answered a ping for longer than the lease is unreachable, and at the
// next tick:
//
//   - a lock request waiting on it (for the master's reply or for its
//     grant) is cancelled ("request cancelled: master node N
//     unreachable"; a completion carries only the status): its copy goes,
//     and a cancel and an unlock follow it on the link, so that whatever
//     the master took of it is undone once the master hears them (the
//     link keeps its order; the answers to all three are ignored here);
//   - an unlock in flight to it is completed here, as a recovery settles
//     it (the client gave the mode up; the master holds it a while
//     longer), so that the session's requests parked behind it go on;
//   - a lookup of a resource's master waiting on it (the directory node)
//     fails the requests behind it;
//   - conversions and cancels keep waiting (the lock stays; its holder
//     cancels the conversion or gives up on its own deadline).
//
// Nothing is dropped from the link: its markers and copies still matter to
// the recovery the master may be in. Silence is counted from the master's
// last pong, or from the last tick at which nothing of the above waited
// on it (an idle link is not silent): every exchange gets at least a
// lease to be answered, and the bound is the lease plus a tick. The
// shell's stream to a master ends after as long without a word and is
// dialled again (package peerlink, OutConfig.Silent).

// heard is when the master last proved alive on this link, or was last
// not needed: its latest pong, the link's opening, or the last tick at
// which nothing waited on it.
func (o *outLink) heard() time.Time {
	t := o.since
	if o.contact.After(t) {
		t = o.contact
	}
	return t
}

// failSilent fails what waits on a master or directory node that has been
// silent for longer than the lease.
func (n *Node) failSilent() {
	var stale []uint32
	for _, m := range sortedNodes(n.outs) {
		if n.now.Sub(n.outs[m].heard()) > n.lease() {
			stale = append(stale, m)
		}
	}
	if len(stale) == 0 {
		return // the usual case: no scan
	}
	waited := n.waitedOn()
	for _, m := range stale {
		o := n.outs[m]
		if waited[m] {
			n.log.WithFields(logrus.Fields{"node": m, "silent": n.now.Sub(o.heard()).String()}).
				Warn("a master is silent for longer than the lease: cancelling the lock requests waiting on it")
			n.failOn(m)
		}
		o.since = n.now // what comes next gets a lease of its own
	}
}

// waitingLock reports whether cl is a lock request that waits for its
// master's grant.
func waitingLock(cl *copyLock) bool { return cl.state == lockspace.StateWaiting }

// settles reports whether p is an unlock that can be completed here.
func (n *Node) settles(p *pending) bool {
	cl := p.lock
	return p.req.Op == dlmpeerv1.Op_OP_UNLOCK && cl != nil && n.locks[cl.key.ID] == cl && cl.state == lockspace.StateGranted
}

// waitedOn returns the nodes that something failOn would fail waits on.
func (n *Node) waitedOn() map[uint32]bool {
	out := map[uint32]bool{}
	for _, p := range n.pend {
		if p.req.Op == dlmpeerv1.Op_OP_LOCK || n.settles(p) {
			out[p.master] = true
		}
	}
	for _, l := range n.lookupTags {
		if l.sent {
			out[l.dir] = true
		}
	}
	for _, cl := range n.locks {
		if waitingLock(cl) {
			out[cl.master] = true
		}
	}
	return out
}

// unreachable is the reply of a request that waited on silent node m: it
// is cancelled (the client may try again), and says why.
func (n *Node) unreachable(what string, m uint32) *dlmpeerv1.PeerReply {
	return &dlmpeerv1.PeerReply{Status: dlmv1.Status_STATUS_CANCELLED,
		Message: fmt.Sprintf("%s node %d unreachable (silent for longer than the lease, %v)", what, m, n.lease())}
}

// failOn fails what waits on silent node m, in the order it was asked.
func (n *Node) failOn(m uint32) {
	var lks []*lookup
	for _, l := range n.lookupTags {
		if l.sent && l.dir == m {
			lks = append(lks, l)
		}
	}
	sortLookups(lks)
	for _, l := range lks {
		delete(n.lookups, l.key)
		delete(n.lookupTags, l.tag)
		for _, p := range l.waiting {
			n.onReply(p, n.unreachable("directory", m), nil)
		}
	}
	var tags []uint64
	for tag, p := range n.pend {
		if p.master == m && (p.req.Op == dlmpeerv1.Op_OP_LOCK || n.settles(p)) {
			tags = append(tags, tag)
		}
	}
	slices.Sort(tags)
	for _, tag := range tags {
		p := n.pend[tag]
		if p == nil || p.req.Op == dlmpeerv1.Op_OP_UNLOCK && !n.settles(p) {
			continue
		}
		n.dropPending(p)
		if p.req.Op == dlmpeerv1.Op_OP_UNLOCK {
			n.settle(p)
			continue
		}
		n.undo(m, p.req)
		rep := n.unreachable("master", m)
		rep.Tag = p.tag
		n.onReply(p, rep, nil)
	}
	var ids []lockspace.LockID
	for id, cl := range n.locks {
		if cl.master == m && waitingLock(cl) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		cl := n.locks[id]
		n.undo(m, &dlmpeerv1.PeerRequest{Lockspace: cl.ls, Resource: []byte(cl.res), Client: cl.key.Owner.Client, LockId: uint64(id)})
		n.onEffect(cl.ls, lockspace.Effect{Kind: lockspace.Refused, Key: cl.key, Resource: cl.res, Mode: cl.rq,
			Err: fmt.Errorf("master node %d unreachable: %w", m, lockspace.ErrCancelled)})
	}
}

// undo asks master m, after the lock request req on the link, to cancel
// it and unlock it: whatever the master took of req is undone once it
// hears them (when it never took req, it refuses both). No answer is
// expected (tag 0).
func (n *Node) undo(m uint32, req *dlmpeerv1.PeerRequest) {
	id := n.installedID()
	for _, op := range []dlmpeerv1.Op{dlmpeerv1.Op_OP_CANCEL, dlmpeerv1.Op_OP_UNLOCK} {
		n.toMaster(m, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Request{Request: &dlmpeerv1.PeerRequest{
			Op: op, Epoch: id.Epoch, Round: id.Round, Lockspace: req.Lockspace, Resource: req.Resource,
			Client: req.Client, LockId: req.LockId}}})
	}
}
