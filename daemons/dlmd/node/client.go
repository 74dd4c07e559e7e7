package node

import (
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// The client side: sessions of the local API and their operations. The
// shell checks a request's names, modes and the caller's right to the
// lockspace before it gets here.

// OpenSession starts a session of a client process (pid, cred) and
// returns its id, the owner's client number on this node. After Leave the
// session is ended at once (Ready's Ended).
func (n *Node) OpenSession(now time.Time, pid int32, cred lockspace.Cred) uint64 {
	n.now = now
	n.nextSess++
	ss := &session{id: n.nextSess, pid: pid, cred: cred}
	if n.leaving {
		// A dlmd that said goodbye takes no new client: the others may
		// already grant what this node mastered.
		ss.closed = true
		n.rd.Ended = append(n.rd.Ended, Ended{Session: ss.id})
		return ss.id
	}
	n.sessions[ss.id] = ss
	return ss.id
}

// byteNamesErr refuses a resource name that is not UTF-8 while a member's
// dlmd has not said it reads such names (FeatByteNames in the hello of
// its link here; every member opens one at a recovery): during a rolling
// upgrade, an older dlmd would fail to decode any message carrying it.
func (n *Node) byteNamesErr(res []byte) error {
	if utf8.Valid(res) {
		return nil
	}
	for _, m := range n.memberList() {
		if in := n.ins[m]; m != n.self && (in == nil || in.features&FeatByteNames == 0) {
			return fmt.Errorf("dlm: resource name %q is not UTF-8, and node %d's dlmd has not said it reads such names (an older version, or not connected yet): use them once every node runs this version: %w",
				res, m, lockspace.ErrInvalid)
		}
	}
	return nil
}

// live returns an open session.
func (n *Node) live(id uint64) *session {
	if ss := n.sessions[id]; ss != nil && !ss.closed {
		return ss
	}
	return nil
}

// Lock starts a new lock of session sess (tag: the client's) in a
// lockspace of configuration cfg.
func (n *Node) Lock(now time.Time, sess, tag uint64, cfg lockspace.Config, r *dlmv1.LockRequest) {
	n.now = now
	ss := n.live(sess)
	if ss == nil {
		return
	}
	if err := n.limitErr(ss, true); err != nil {
		n.tell(ss, ReplyErr(tag, err))
		return
	}
	if err := n.byteNamesErr(r.GetResource()); err != nil {
		n.tell(ss, ReplyErr(tag, err))
		return
	}
	n.lsCfg[r.GetLockspace()] = cfg
	n.nextLock++
	id := lockspace.LockID(n.nextLock)
	fl := lockspace.Flags(r.GetFlags())
	cl := &copyLock{ls: r.GetLockspace(), res: string(r.GetResource()), key: lockspace.Key{Owner: lockspace.Owner{Node: lockspace.NodeID(n.self), Client: ss.id}, ID: id},
		sess: ss, owner: ss, pid: ss.pid, uid: ss.cred.UID, flags: fl, persistent: fl&lockspace.Persistent != 0}
	n.addLock(cl)
	req := &dlmpeerv1.PeerRequest{Op: dlmpeerv1.Op_OP_LOCK, Lockspace: cl.ls, Config: cfgToProto(cfg), Resource: []byte(cl.res),
		Client: ss.id, Pid: ss.pid, LockId: uint64(id), Mode: r.GetMode(), Flags: r.GetFlags(),
		TimeoutNanos: r.GetTimeoutNanos(), Cred: credToProto(ss.cred)}
	n.countPending(ss)
	n.submit(&pending{req: req, sess: ss, ctag: tag, lock: cl, inReply: r.GetCompletionInReply(), counted: true})
}

// Convert converts one of the session's locks.
func (n *Node) Convert(now time.Time, sess, tag uint64, r *dlmv1.ConvertRequest) {
	req := &dlmpeerv1.PeerRequest{Op: dlmpeerv1.Op_OP_CONVERT, LockId: r.GetLockId(), Mode: r.GetMode(), Flags: r.GetFlags(),
		TimeoutNanos: r.GetTimeoutNanos(), Lvb: r.GetLvb()}
	n.op(now, sess, tag, req, pending{inReply: r.GetCompletionInReply()})
}

// Unlock releases one of the session's locks (or cancels its request).
func (n *Node) Unlock(now time.Time, sess, tag uint64, r *dlmv1.UnlockRequest) {
	req := &dlmpeerv1.PeerRequest{Op: dlmpeerv1.Op_OP_UNLOCK, LockId: r.GetLockId(), Flags: r.GetFlags(), Lvb: r.GetLvb()}
	n.op(now, sess, tag, req, pending{quiet: r.GetNoReply()})
}

// Cancel cancels the pending request of one of the session's locks.
func (n *Node) Cancel(now time.Time, sess, tag uint64, r *dlmv1.CancelRequest) {
	n.op(now, sess, tag, &dlmpeerv1.PeerRequest{Op: dlmpeerv1.Op_OP_CANCEL, LockId: r.GetLockId()}, pending{})
}

// op starts a convert, unlock or cancel of one of the session's locks;
// how carries the client's reply options.
func (n *Node) op(now time.Time, sess, tag uint64, req *dlmpeerv1.PeerRequest, how pending) {
	n.now = now
	ss := n.live(sess)
	if ss == nil {
		return
	}
	cl := n.locks[lockspace.LockID(req.LockId)]
	if cl == nil || cl.sess != ss {
		n.tell(ss, ReplyErr(tag, fmt.Errorf("dlm: lock %d: %w", req.LockId, lockspace.ErrUnknownLock)))
		return
	}
	if err := n.limitErr(ss, false); err != nil {
		n.tell(ss, ReplyErr(tag, err))
		return
	}
	req.Lockspace, req.Resource, req.Client, req.Pid = cl.ls, []byte(cl.res), ss.id, ss.pid
	req.Config = cfgToProto(n.lsCfg[cl.ls])
	n.countPending(ss)
	n.submit(&pending{req: req, sess: ss, ctag: tag, lock: cl, inReply: how.inReply, quiet: how.quiet, counted: true})
}

// ReplyErr is the reply to a client request that failed.
func ReplyErr(tag uint64, err error) *dlmv1.ServerMessage {
	return &dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Reply{Reply: &dlmv1.Reply{Tag: tag, Status: StatusOf(err), Message: WireMessage(err)}}}
}

// CloseSession handles a client whose session ended (it exited or
// crashed): its locks go at once, persistent ones stay as orphans.
func (n *Node) CloseSession(now time.Time, sess uint64) {
	n.now = now
	ss := n.sessions[sess]
	if ss == nil {
		return
	}
	n.uncountSession(ss)
	n.sessionExit(ss)
}

func (n *Node) sessionExit(ss *session) {
	if n.rec != nil || !n.haveLast {
		n.deferred = append(n.deferred, func() { n.sessionExit(ss) })
		ss.closed = true
		return
	}
	ss.closed = true
	delete(n.sessions, ss.id)
	ss.parked = nil // their copies go with the session's below
	masters := map[uint32]bool{}
	for _, cl := range n.locks {
		if cl.sess != ss {
			continue
		}
		if cl.state != 0 && cl.master != 0 {
			masters[cl.master] = true
		}
		if cl.persistent && (cl.state == lockspace.StateGranted || cl.state == lockspace.StateConverting) {
			cl.state, cl.rq, cl.deadline, cl.orphan, cl.sess = lockspace.StateGranted, 0, time.Time{}, true, nil
			continue
		}
		n.dropLock(cl)
	}
	// Requests in flight reach their masters before the exit does (same
	// link), so every master that may hold one hears of it.
	for _, p := range n.pend {
		if p.sess == ss {
			masters[p.master] = true
		}
	}
	for _, m := range sortedNodes(masters) {
		if m == n.self {
			n.onOwnerExit(n.self, ss.id)
			continue
		}
		n.toMaster(m, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_OwnerExit{OwnerExit: &dlmpeerv1.OwnerExit{Client: ss.id}}})
	}
}

// Purge unlocks this node's orphans in lockspace ls (of process pid, or
// all with pid 0) that uid may purge (its own; root: all) and returns how
// many it released.
func (n *Node) Purge(now time.Time, ls string, pid int32, uid uint32) int {
	n.now = now
	var ids []lockspace.LockID
	for id, cl := range n.locks {
		if cl.orphan && !cl.purging && cl.ls == ls && (pid == 0 || cl.pid == pid) && (uid == 0 || cl.uid == uid) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		cl := n.locks[id]
		cl.purging = true
		req := &dlmpeerv1.PeerRequest{Op: dlmpeerv1.Op_OP_UNLOCK, Lockspace: cl.ls, Config: cfgToProto(n.lsCfg[cl.ls]), Resource: []byte(cl.res),
			Client: cl.key.Owner.Client, Pid: cl.pid, LockId: uint64(id)}
		n.submit(&pending{req: req, lock: cl, quiet: true})
	}
	return len(ids)
}

// LockspaceConfig returns a lockspace's config as this node knows it.
func (n *Node) LockspaceConfig(name string) (lockspace.Config, bool) {
	cfg, ok := n.lsCfg[name]
	return cfg, ok
}

// Members is the installed directory's members (nil before the first).
func (n *Node) Members() []uint32 { return slices.Clone(n.dir) }

// Dump renders the master tables (of one lockspace, or all).
func (n *Node) Dump(only string) []*dlmv1.Resource { return n.DumpPage(only, "", "", 0) }

// DumpPage renders at most limit resources (0: all) of the master tables
// (of one lockspace, or all), the first after afterLS/afterName in
// lockspace, then name order ("", "": from the start).
func (n *Node) DumpPage(only, afterLS, afterName string, limit int) []*dlmv1.Resource {
	var out []*dlmv1.Resource
	for _, name := range sortedKeys(n.tables) {
		if only != "" && name != only || name < afterLS {
			continue
		}
		t := n.tables[name]
		after := ""
		if name == afterLS {
			after = afterName
		}
		for _, r := range t.ResourcesAfter(after, limit-len(out)) {
			lvb, valid, _ := t.LVB(r)
			res := &dlmv1.Resource{Lockspace: name, Name: []byte(r), Master: n.self, LvbValid: valid, Lvb: lvb[:]}
			for _, li := range t.Dump(r) {
				res.Locks = append(res.Locks, &dlmv1.Lock{Node: uint32(li.Key.Owner.Node), Client: li.Key.Owner.Client,
					Pid: n.pids[li.Key.Owner], Id: uint64(li.Key.ID), State: plockState(li.State),
					Granted: pmode(li.Granted), Requested: pmode(li.Requested), Flags: uint32(li.Flags), Orphan: li.Orphan})
			}
			out = append(out, res)
		}
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out
}

// Masters reports whether this node masters a resource, and whether its
// part of the directory records a master for it.
func (n *Node) Masters(ls, res string) (mastered, inDirectory bool) {
	k := directory.Key{Lockspace: ls, Resource: res}
	_, mastered = n.mastered[k]
	_, inDirectory = n.dirTable.Master(k)
	return mastered, inDirectory
}

// ---- deadlocks ----

// Coordinator returns the members when this node is the one that looks
// for deadlocks across the cluster (the lowest member), else nil.
func (n *Node) Coordinator() []uint32 {
	if n.rec == nil && len(n.dir) > 0 && n.dir[0] == n.self {
		return slices.Clone(n.dir)
	}
	return nil
}

// Edges returns the wait-for edges of this node's masters.
func (n *Node) Edges() []*dlmpeerv1.Edge {
	if n.rec != nil {
		return nil
	}
	var out []*dlmpeerv1.Edge
	for _, name := range sortedKeys(n.tables) {
		for _, e := range n.tables[name].WaitEdges() {
			out = append(out, EdgeToProto(name, e))
		}
	}
	return out
}

// Victims fails deadlock victims pending on this node's masters.
func (n *Node) Victims(now time.Time, vs []*dlmpeerv1.Edge) {
	n.now = now
	if n.rec != nil {
		return
	}
	by := map[string][]lockspace.Waiter{}
	for _, v := range vs {
		ls, e := EdgeFromProto(v)
		by[ls] = append(by[ls], e.Waiter)
	}
	for _, name := range sortedKeys(by) {
		if t := n.tables[name]; t != nil {
			n.route(name, t.ApplyVictims(by[name]))
		}
	}
}

// EdgeToProto renders a wait-for edge of lockspace ls.
func EdgeToProto(ls string, e lockspace.Edge) *dlmpeerv1.Edge {
	w := e.Waiter
	return &dlmpeerv1.Edge{Lockspace: ls, HolderNode: uint32(e.Holder.Node), HolderClient: e.Holder.Client,
		Waiter: &dlmpeerv1.Waiter{Resource: []byte(w.Resource), Node: uint32(w.Key.Owner.Node), Client: w.Key.Owner.Client,
			LockId: uint64(w.Key.ID), Seq: w.Seq, Mode: pmode(w.Mode)}}
}

// EdgeFromProto reads a wait-for edge and its lockspace.
func EdgeFromProto(e *dlmpeerv1.Edge) (string, lockspace.Edge) {
	w := e.GetWaiter()
	return e.GetLockspace(), lockspace.Edge{
		Holder: lockspace.Owner{Node: lockspace.NodeID(e.GetHolderNode()), Client: e.GetHolderClient()},
		Waiter: lockspace.Waiter{Resource: string(w.GetResource()), Seq: w.GetSeq(), Mode: mode(w.GetMode()),
			Key: lockspace.Key{Owner: lockspace.Owner{Node: lockspace.NodeID(w.GetNode()), Client: w.GetClient()}, ID: lockspace.LockID(w.GetLockId())}},
	}
}
