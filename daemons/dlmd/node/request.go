package node

import (
	"fmt"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// The request path: a local client's request to its master (here or on
// a peer), the master serving it, and the replies and effects that come
// back to the requesting node's copies and sessions.

// submit sends a new request of a local client to its master. It is
// deferred while recovering.
func (n *Node) submit(p *pending) {
	if n.rec != nil || !n.haveLast {
		n.deferred = append(n.deferred, func() { n.submit(p) })
		return
	}
	if p.sess != nil && p.sess.closed && p.req.Op == dlmpeerv1.Op_OP_LOCK {
		n.dropLock(p.lock)
		return
	}
	if p.req.Op != dlmpeerv1.Op_OP_LOCK && n.locks[p.lock.key.ID] != p.lock {
		// The lock went while the request waited (its session ended, or
		// it was refused or released): its master may be gone too, and
		// no one would answer.
		n.answered(p)
		if p.sess != nil && !p.sess.closed {
			n.tell(p.sess, ReplyErr(p.ctag, fmt.Errorf("dlm: lock %d: %w", p.req.LockId, lockspace.ErrUnknownLock)))
		}
		return
	}
	id := n.installedID()
	p.req.Epoch, p.req.Round = id.Epoch, id.Round
	p.master = n.masterFor(p)
	if p.master == 0 {
		n.awaitLookup(p, false)
		return
	}
	if p.req.Op == dlmpeerv1.Op_OP_LOCK {
		p.lock.master = p.master
	}
	if n.park(p) {
		return
	}
	n.nextTag++
	p.tag = n.nextTag
	p.req.Tag = p.tag
	if p.master == n.self {
		rep, effs := n.serve(n.self, p.req)
		own, effs := ownEffect(n.self, p.req, effs)
		n.onReply(p, rep, own)
		n.route(p.req.Lockspace, effs)
		return
	}
	n.addPending(p)
	n.toMaster(p.master, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Request{Request: p.req}})
}

// park holds back a session's request while an unlock of the session is
// in flight to another master, and everything after a held request.
// Unlock does not wait for dlmd, so without this the session's next
// request could wait at one master while another still shows the session
// holding what it released: the wait-for graph would show a cycle that
// does not exist, and a request would fail as a deadlock victim. An
// unlock and the next request to the same master keep their order on the
// link and need not wait.
func (n *Node) park(p *pending) bool {
	ss := p.sess
	if ss == nil {
		return false
	}
	hold := len(ss.parked) > 0
	if !hold && (p.req.Op == dlmpeerv1.Op_OP_LOCK || p.req.Op == dlmpeerv1.Op_OP_CONVERT) {
		for m, c := range ss.unlocking {
			if c > 0 && m != p.master {
				hold = true
				break
			}
		}
	}
	if hold {
		ss.parked = append(ss.parked, p)
	}
	return hold
}

// addPending files a request sent to a remote master.
func (n *Node) addPending(p *pending) {
	n.pend[p.tag] = p
	if ss := p.sess; ss != nil && p.req.Op == dlmpeerv1.Op_OP_UNLOCK {
		if ss.unlocking == nil {
			ss.unlocking = map[uint32]int{}
		}
		ss.unlocking[p.master]++
	}
}

// dropPending unfiles a request (answered, or to be sent again after a
// recovery) and sends what its session held back for it.
func (n *Node) dropPending(p *pending) {
	delete(n.pend, p.tag)
	ss := p.sess
	if ss == nil || p.req.Op != dlmpeerv1.Op_OP_UNLOCK || ss.unlocking[p.master] == 0 {
		return
	}
	if ss.unlocking[p.master]--; ss.unlocking[p.master] == 0 {
		delete(ss.unlocking, p.master)
	}
	parked := ss.parked
	ss.parked = nil
	for _, q := range parked {
		n.submit(q)
	}
}

// ownEffect takes out of effs the effect deciding req's own lock (granted
// or refused at once), when it is the first effect for the requesting
// node, so that it travels with the reply: what that node receives keeps
// its order.
func ownEffect(from uint32, req *dlmpeerv1.PeerRequest, effs []lockspace.Effect) (*lockspace.Effect, []lockspace.Effect) {
	for i, e := range effs {
		if uint32(e.Key.Owner.Node) != from {
			continue
		}
		if e.Key.Owner.Client != req.Client || uint64(e.Key.ID) != req.LockId || e.Kind == lockspace.Blocking {
			return nil, effs
		}
		return &e, slices.Delete(slices.Clone(effs), i, i+1)
	}
	return nil, effs
}

// onReply applies a master's answer to a request of this node, and own,
// the effect that decided the request at once (nil: none, or it comes on
// its own).
func (n *Node) onReply(p *pending, rep *dlmpeerv1.PeerReply, own *lockspace.Effect) {
	err := ErrorOf(rep.GetStatus(), rep.GetMessage())
	if err == ErrRetry {
		n.retry(p)
		return
	}
	n.answered(p)
	cl := p.lock
	req := p.req
	closed := p.sess == nil || p.sess.closed
	switch req.Op {
	case dlmpeerv1.Op_OP_LOCK:
		if err != nil || closed && !cl.persistent {
			n.dropLock(cl)
		} else {
			cl.state, cl.rq, cl.seq = lockspace.StateWaiting, mode(req.Mode), rep.GetSeq()
			cl.deadline = n.deadline(req.TimeoutNanos)
		}
	case dlmpeerv1.Op_OP_CONVERT:
		if err == nil && cl.state == lockspace.StateGranted {
			m := mode(req.Mode)
			fl := lockspace.Flags(req.Flags)
			if cl.gr.Covers(m) {
				if cl.gr == lockspace.PW || cl.gr == lockspace.EX {
					switch {
					case fl&lockspace.InvalidateLVB != 0:
						cl.hasLVB, cl.lvbValid, cl.wrote = true, false, true
					case fl&lockspace.ValBlk != 0:
						cl.hasLVB, cl.lvbValid, cl.lvb, cl.wrote = true, true, lvbOf(req.Lvb), true
					}
				}
			} else if !closed {
				// (Once the session ended, the master's owner exit, which
				// follows on the link, ends the conversion of an orphan.)
				cl.state, cl.rq, cl.seq = lockspace.StateConverting, m, rep.GetSeq()
				cl.deadline = n.deadline(req.TimeoutNanos)
			}
			cl.flags = fl
		}
	case dlmpeerv1.Op_OP_UNLOCK:
		if err == nil {
			n.dropLock(cl)
		} else {
			cl.purging = false
		}
	}
	var extra *dlmv1.ServerMessage
	var to *session
	if own != nil {
		to, extra = n.applyEffect(req.Lockspace, *own)
	}
	if !closed {
		r := &dlmv1.Reply{Tag: p.ctag, Status: rep.GetStatus(), Message: rep.GetMessage()}
		if req.Op == dlmpeerv1.Op_OP_LOCK && err == nil {
			r.LockId = req.LockId
		}
		if c := extra.GetCompletion(); c != nil && p.inReply && to == p.sess {
			r.Completion, extra = c, nil
		}
		if !p.quiet || err != nil {
			n.tell(p.sess, &dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Reply{Reply: r}})
		}
	}
	if extra != nil {
		n.tell(to, extra)
	}
}

func (n *Node) deadline(nanos int64) time.Time {
	if nanos <= 0 {
		return time.Time{}
	}
	return n.now.Add(time.Duration(nanos))
}

// retry sends a request again once the master can take it: after the
// recovery in progress, or at the next tick. A lock request looks its
// master up again (the one it asked may have given the resource up).
func (n *Node) retry(p *pending) {
	if n.rec != nil {
		n.outbox = append(n.outbox, p)
		return
	}
	if p.req.Op == dlmpeerv1.Op_OP_LOCK {
		k := keyOf(p.req)
		p.lock.master = 0
		delete(n.routes, k)
		n.awaitLookup(p, true)
		return
	}
	n.retries = append(n.retries, p)
}

// onEffect applies an effect of a master for one of this node's owners.
func (n *Node) onEffect(lsName string, e lockspace.Effect) {
	if to, m := n.applyEffect(lsName, e); m != nil {
		n.tell(to, m)
	}
}

// applyEffect applies an effect to this node's copy of the lock and
// returns what its session must be told (nil: nothing).
func (n *Node) applyEffect(lsName string, e lockspace.Effect) (*session, *dlmv1.ServerMessage) {
	cl := n.locks[e.Key.ID]
	if cl == nil || cl.key != e.Key || cl.ls != lsName {
		return nil, nil
	}
	switch e.Kind {
	case lockspace.Granted:
		cl.state, cl.gr, cl.rq, cl.deadline, cl.seq, cl.token = lockspace.StateGranted, e.Mode, 0, time.Time{}, e.Seq, e.Token
		switch {
		case e.HasLVB:
			cl.hasLVB, cl.lvb, cl.lvbValid = true, e.LVB, e.LVBValid
		case cl.wrote:
			// The value it wrote as it converted down stands: no one can
			// have written since.
		case e.Mode == lockspace.PR || e.Mode == lockspace.PW || e.Mode == lockspace.EX:
			cl.hasLVB = false // it did not read the value: its copy must not vouch for it
		}
		cl.wrote = false
		if cl.sess == nil || cl.sess.closed {
			if !cl.persistent {
				n.dropLock(cl)
			} else {
				cl.orphan, cl.sess = true, nil
			}
			return nil, nil
		}
		return cl.sess, &dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Completion{Completion: &dlmv1.Completion{
			LockId: uint64(e.Key.ID), Granted: true, Mode: pmode(e.Mode),
			HasLvb: e.HasLVB, Lvb: lvbBytes(e), LvbValid: e.LVBValid, Token: e.Token}}}
	case lockspace.Refused:
		if e.Held {
			cl.state, cl.gr, cl.rq, cl.deadline = lockspace.StateGranted, e.Mode, 0, time.Time{}
		} else {
			n.dropLock(cl)
		}
		if cl.sess == nil || cl.sess.closed {
			return nil, nil
		}
		return cl.sess, &dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Completion{Completion: &dlmv1.Completion{
			LockId: uint64(e.Key.ID), Mode: pmode(e.Mode), Status: StatusOf(e.Err), Held: e.Held}}}
	case lockspace.Blocking:
		if cl.sess != nil && !cl.sess.closed {
			return cl.sess, &dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Blocking{Blocking: &dlmv1.Blocking{
				LockId: uint64(e.Key.ID), Mode: pmode(e.Mode)}}}
		}
	}
	return nil, nil
}

func lvbBytes(e lockspace.Effect) []byte {
	if !e.HasLVB {
		return nil
	}
	return e.LVB[:]
}

// ---- the master side ----

// serve runs a request on a master table of this node.
func (n *Node) serve(from uint32, req *dlmpeerv1.PeerRequest) (*dlmpeerv1.PeerReply, []lockspace.Effect) {
	rep := &dlmpeerv1.PeerReply{Tag: req.Tag}
	fail := func(err error) (*dlmpeerv1.PeerReply, []lockspace.Effect) {
		rep.Status, rep.Message = StatusOf(err), WireMessage(err)
		return rep, nil
	}
	m := n.mastered[keyOf(req)]
	if m == nil {
		return fail(fmt.Errorf("dlm: %s/%s is not mastered on node %d: %w", req.Lockspace, req.Resource, n.self, ErrRetry))
	}
	now := n.now
	m.used = now
	cfg := cfgFromProto(req.Config)
	t, err := n.table(req.Lockspace, cfg)
	if err != nil {
		return fail(err)
	}
	if req.Op == dlmpeerv1.Op_OP_LOCK && cfg != t.Config() {
		// The requester read the lockspace's record after a chmod or
		// chown: new locks are checked against it.
		t.SetConfig(cfg)
		n.lsCfg[req.Lockspace] = cfg
	}
	t.RaiseToken(string(req.Resource), m.floor)
	owner := lockspace.Owner{Node: lockspace.NodeID(from), Client: req.Client}
	r := lockspace.Request{Owner: owner, ID: lockspace.LockID(req.LockId), Resource: string(req.Resource),
		Mode: mode(req.Mode), Flags: lockspace.Flags(req.Flags), Timeout: durationOf(req.TimeoutNanos), LVB: lvbOf(req.Lvb)}
	before := t.Seq()
	var effs []lockspace.Effect
	switch req.Op {
	case dlmpeerv1.Op_OP_LOCK:
		effs, err = t.Lock(now, credFromProto(req.Cred), r)
		n.pids[owner] = req.Pid
	case dlmpeerv1.Op_OP_CONVERT:
		effs, err = t.Convert(now, r)
	case dlmpeerv1.Op_OP_UNLOCK:
		effs, err = t.Unlock(owner, r.ID, r.Flags, r.LVB)
	case dlmpeerv1.Op_OP_CANCEL:
		effs, err = t.Cancel(owner, r.ID)
	default:
		err = fmt.Errorf("dlm: operation %v: %w", req.Op, lockspace.ErrInvalid)
	}
	if err != nil {
		return fail(err)
	}
	if t.Seq() > before {
		rep.Seq = before + 1
	}
	return rep, effs
}

// route delivers effects to their owners: here, or on the link their node
// opened to us.
func (n *Node) route(lsName string, effs []lockspace.Effect) {
	for _, e := range effs {
		node := uint32(e.Key.Owner.Node)
		if node == n.self {
			n.onEffect(lsName, e)
			continue
		}
		if !n.toRequester(node, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Effect{Effect: effectToProto(lsName, e)}}) {
			n.log.WithFields(logrus.Fields{"node": node, "effect": e.String()}).Debug("no channel from the owner's node; effect dropped")
		}
	}
}

func effectToProto(lsName string, e lockspace.Effect) *dlmpeerv1.PeerEffect {
	pe := &dlmpeerv1.PeerEffect{Lockspace: lsName, Kind: peffectKind(e.Kind), Resource: []byte(e.Resource),
		Client: e.Key.Owner.Client, LockId: uint64(e.Key.ID), Mode: pmode(e.Mode), Held: e.Held,
		Status: StatusOf(e.Err), Seq: e.Seq, HasLvb: e.HasLVB, LvbValid: e.LVBValid, Token: e.Token}
	if e.HasLVB {
		pe.Lvb = e.LVB[:]
	}
	return pe
}

func effectFromProto(node uint32, pe *dlmpeerv1.PeerEffect) lockspace.Effect {
	e := lockspace.Effect{Kind: effectKind(pe.GetKind()), Resource: string(pe.GetResource()),
		Key:  lockspace.Key{Owner: lockspace.Owner{Node: lockspace.NodeID(node), Client: pe.GetClient()}, ID: lockspace.LockID(pe.GetLockId())},
		Mode: mode(pe.GetMode()), Held: pe.GetHeld(), Seq: pe.GetSeq(), HasLVB: pe.GetHasLvb(), LVB: lvbOf(pe.GetLvb()), LVBValid: pe.GetLvbValid(),
		Token: pe.GetToken()}
	if pe.GetStatus() != dlmv1.Status_STATUS_OK {
		e.Err = ErrorOf(pe.GetStatus(), "")
	}
	return e
}

// onPeerRequest handles a request from another node's owner.
func (n *Node) onPeerRequest(from uint32, req *dlmpeerv1.PeerRequest) {
	id := directory.ID{Epoch: req.Epoch, Round: req.Round}
	switch {
	case n.rec != nil && id == n.rec.id:
		n.deferred = append(n.deferred, func() { n.onPeerRequest(from, req) })
		return
	case n.rec != nil || !n.haveLast || id != n.last.ID:
		n.toRequester(from, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Reply{Reply: &dlmpeerv1.PeerReply{
			Tag: req.Tag, Status: dlmv1.Status_STATUS_RETRY, Message: "recovering"}}})
		return
	}
	rep, effs := n.serve(from, req)
	if in := n.ins[from]; in != nil && in.features&FeatEffectInReply != 0 {
		var own *lockspace.Effect
		if own, effs = ownEffect(from, req, effs); own != nil {
			rep.Effect = effectToProto(req.Lockspace, *own)
		}
	}
	n.toRequester(from, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Reply{Reply: rep}})
	n.route(req.Lockspace, effs)
}

// onOwnerExit handles the exit of an owner on node (here or a peer) on the
// tables this node masters.
func (n *Node) onOwnerExit(node uint32, client uint64) {
	o := lockspace.Owner{Node: lockspace.NodeID(node), Client: client}
	for _, name := range sortedKeys(n.tables) {
		n.route(name, n.tables[name].OwnerExit(o))
	}
	delete(n.pids, o)
}
