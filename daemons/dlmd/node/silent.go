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
// answered a ping for longer than the lease is unreachable: at the next
// tick the requests waiting on it are cancelled ("request cancelled:
// master node N unreachable"; a completion carries only the status), its
// link is closed (what was still in flight on it is dropped by the master
// when the new link replaces it) and what the master may have taken of
// them is undone on the new link (cancel, unlock), where it goes once the
// master is heard again. Silence is counted from the master's last pong,
// or from the last tick at which nothing waited on it (an idle link is
// not silent): every exchange gets at least a lease to be answered. The
// bound is the lease plus a tick; the shell's stream ends after as long
// and redials (package peerlink, Silent).

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
		if n.now.Sub(n.outs[m].heard()) > n.cfg.Lease {
			stale = append(stale, m)
		}
	}
	if len(stale) == 0 {
		return // the usual case: no scan
	}
	waited := n.waitedOn()
	for _, m := range stale {
		o := n.outs[m]
		if !waited[m] {
			o.since = n.now // idle: its silence does not count
			continue
		}
		n.log.WithFields(logrus.Fields{"node": m, "silent": n.now.Sub(o.heard()).String()}).
			Warn("a master is silent for longer than the lease: failing what waits on it and resetting its link")
		n.closeOut(m)
		n.failOn(m)
	}
}

// waitedOn returns the nodes a request, a lookup or a lock of this node
// waits for.
func (n *Node) waitedOn() map[uint32]bool {
	out := map[uint32]bool{}
	for _, p := range n.pend {
		out[p.master] = true
	}
	for _, l := range n.lookupTags {
		if l.sent {
			out[l.dir] = true
		}
	}
	for _, cl := range n.locks {
		if cl.state == lockspace.StateWaiting || cl.state == lockspace.StateConverting {
			out[cl.master] = true
		}
	}
	return out
}

// unreachable is the reply of a request that waited on silent node m: it
// is cancelled (the client may try again), and says why.
func (n *Node) unreachable(what string, m uint32) *dlmpeerv1.PeerReply {
	return &dlmpeerv1.PeerReply{Status: dlmv1.Status_STATUS_CANCELLED,
		Message: fmt.Sprintf("%s node %d unreachable (silent for longer than the lease, %v)", what, m, n.cfg.Lease)}
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
		if p.master == m {
			tags = append(tags, tag)
		}
	}
	slices.Sort(tags)
	for _, tag := range tags {
		p := n.pend[tag]
		if p == nil {
			continue // settled by one before it
		}
		n.dropPending(p)
		switch p.req.Op {
		case dlmpeerv1.Op_OP_LOCK:
			n.undo(m, p.req, true)
		case dlmpeerv1.Op_OP_CONVERT:
			n.undo(m, p.req, false)
		case dlmpeerv1.Op_OP_UNLOCK:
			// The client gave the lock up: as a recovery would, take the
			// unlock as done here, and make sure the master does it.
			n.undo(m, p.req, true)
			if n.settle(p) {
				continue
			}
		}
		rep := n.unreachable("master", m)
		rep.Tag = p.tag
		n.onReply(p, rep, nil)
	}
	var ids []lockspace.LockID
	for id, cl := range n.locks {
		if cl.master == m && (cl.state == lockspace.StateWaiting || cl.state == lockspace.StateConverting) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		cl := n.locks[id]
		req := &dlmpeerv1.PeerRequest{Lockspace: cl.ls, Resource: cl.res, Client: cl.key.Owner.Client, LockId: uint64(id)}
		e := lockspace.Effect{Kind: lockspace.Refused, Key: cl.key, Resource: cl.res, Mode: cl.rq, Err: fmt.Errorf("master node %d unreachable: %w", m, lockspace.ErrCancelled)}
		if cl.state == lockspace.StateConverting {
			e.Held, e.Mode = true, cl.gr
		}
		n.undo(m, req, !e.Held)
		n.onEffect(cl.ls, e)
	}
}

// undo asks master m, on the new link, to cancel what req may have left
// there waiting, and to unlock the lock when unlock is set. It expects no
// answer (tag 0): when the master never took req, it refuses both.
func (n *Node) undo(m uint32, req *dlmpeerv1.PeerRequest, unlock bool) {
	id := n.installedID()
	ops := []dlmpeerv1.Op{dlmpeerv1.Op_OP_CANCEL}
	if unlock {
		ops = append(ops, dlmpeerv1.Op_OP_UNLOCK)
	}
	for _, op := range ops {
		n.toMaster(m, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Request{Request: &dlmpeerv1.PeerRequest{
			Op: op, Epoch: id.Epoch, Round: id.Round, Lockspace: req.Lockspace, Resource: req.Resource,
			Client: req.Client, LockId: req.LockId}}})
	}
}
