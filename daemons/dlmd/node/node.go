// Package node is dlmd's distributed protocol as a pure state machine, in
// the shape of etcd's raft: a Node holds one dlmd's lock tables (package
// lockspace), its part of the directory (package directory), its copies of
// its clients' locks, its routes to masters, the recovery in progress and
// its lease; it is driven by methods for client operations, peer messages
// (Step), membership changes, link events and ticks, each taking the time
// as an argument, and accumulates what to send to which node and what to
// tell which session for the caller to take with Ready. It starts no
// goroutine, reads no clock, opens no socket and takes no lock: the shell
// (package server) owns the links, the gRPC streams, the clock and the one
// goroutine that calls it.
//
// Each node keeps, besides the tables of the resources it masters, a copy
// of every lock its own clients hold (resource, state, modes, flags,
// sequence number, the value block it saw), updated only from the master's
// replies and effects. Masters are found through the directory (route.go:
// first-requester mastering). On every membership change the recovery of
// package directory runs (recovery.go): the copies rebuild the resources
// whose master was lost, the lost nodes' locks are dropped where the
// master stays, and the directory is registered anew. The lease
// (lease.go) fences a node cut off from a majority before the others can
// give its locks away.
//
// Links: a Node names its own link to a master (requests, owner exits,
// markers, copies, lookups go out; replies, effects, acknowledgements come
// back) by a number it chooses (Link.Out), and the link a requester opened
// to it by the requester's incarnation and link number. The shell carries
// each link reliably and in order while both ends live; a link closed, or
// replaced by a newer one, drops what it carried.
package node

import (
	"fmt"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// Config is what a Node needs.
type Config struct {
	// Node is this node's number.
	Node uint32
	// Incarnation distinguishes this run of dlmd from earlier ones on the
	// node; a fence moves to a higher one.
	Incarnation uint64
	// Lease is how long this node's locks stay valid without contact with
	// a majority of the members' dlmd. Default 1s.
	Lease time.Duration
	// Toss is how long a master keeps a resource after its last lock
	// went, and a node remembers a master it does not use. Default 10s.
	Toss time.Duration
	// Tick is how often the shell calls Tick (it bounds the lease margin).
	// Default 20ms.
	Tick time.Duration
	// Log is the daemon's logger.
	Log logrus.FieldLogger
}

// Link names one link between this node and a peer: Out, this node's link
// to the peer as a master (ID chosen by this node, Inc this node's
// incarnation); otherwise the link the peer opened here as a requester
// (Inc and ID from its hello).
type Link struct {
	Node uint32
	Out  bool
	Inc  uint64
	ID   uint64
}

// Message is a peer message to send on a link.
type Message struct {
	Link Link
	Msg  *dlmv1.PeerMessage
}

// SessionMessage is a message for a local client session.
type SessionMessage struct {
	Session uint64
	Msg     *dlmv1.ServerMessage
}

// Ended is a session the Node ended; Lost: the node fenced, its locks are
// gone.
type Ended struct {
	Session uint64
	Lost    bool
}

// Ready is what the Node asks the shell to do, in order within each list.
type Ready struct {
	// Messages to send. A message on an out link the shell does not have
	// (a new Link.ID for the node) opens it, replacing the old one; one on
	// an in link that is not the current one is dropped.
	Messages []Message
	// Sessions is what to tell local sessions.
	Sessions []SessionMessage
	// Ended are the sessions to end.
	Ended []Ended
	// Closed are the links to close (when still the current ones).
	Closed []Link
	// Installed: the first directory was installed; the node grants.
	Installed bool
}

// tick is the default granularity of the shell's ticks.
const defaultTick = 20 * time.Millisecond

// Node is one dlmd's protocol state. It is not safe for concurrent use.
type Node struct {
	cfg  Config
	self uint32
	log  logrus.FieldLogger
	now  time.Time // the time of the call in progress
	rd   Ready

	tables   map[string]*lockspace.Lockspace
	lsCfg    map[string]lockspace.Config
	sessions map[uint64]*session
	locks    map[lockspace.LockID]*copyLock
	pend     map[uint64]*pending
	outbox   []*pending
	deferred []func()
	pids     map[lockspace.Owner]int32
	members  directory.Members
	dir      []uint32
	last     directory.Completed
	haveLast bool
	rec      *recovery
	early    []earlyMarker
	retries  []*pending // sent again at the next tick, in order
	// gone are the nodes whose dlmd said goodbye (its incarnation), until
	// a new dlmd of theirs shows up; rejoining those whose new dlmd showed
	// up and has not answered a ping yet. Neither counts for the lease; a
	// recovery does not wait for the gone.
	gone      map[uint32]uint64
	rejoining map[uint32]bool
	// leaving: this dlmd said goodbye and is stopping.
	leaving bool

	// First-requester mastering (see route.go): the masters this node
	// knows, its lookups in progress (by resource and by tag), the
	// resources it masters (with their last use) and its part of the
	// directory.
	routes     map[directory.Key]*route
	lookups    map[directory.Key]*lookup
	lookupTags map[uint64]*lookup
	mastered   map[directory.Key]*mastery
	dirTable   *directory.Table
	tossQ      []tossItem // what toss looks at, from tossHead on
	tossHead   int

	// outs and ins are the current links (see Link).
	outs map[uint32]*outLink
	ins  map[uint32]*inLink

	// ponged is when this node last answered each node's ping; pongable
	// the nodes it answers (the members).
	ponged   map[uint32]time.Time
	pongable map[uint32]bool

	nextLock  uint64
	nextTag   uint64
	nextSess  uint64
	nextLink  uint64
	readyDone bool
}

// outLink is this node's link to a master.
type outLink struct {
	id uint64
	// contact is when the master's latest pong was pinged.
	contact time.Time
}

// inLink is a link a requester opened here.
type inLink struct {
	inc, id uint64
	// features: the PeerHello feature bits of the requesting node.
	features uint32
	// since is when the link was made here.
	since time.Time
}

// session is one client's lock session (an owner).
type session struct {
	id     uint64
	pid    int32
	cred   lockspace.Cred
	closed bool
	// unlocking counts the session's unlocks in flight by master, and
	// parked holds its requests waiting for them (see park).
	unlocking map[uint32]int
	parked    []*pending
}

// copyLock is this node's copy of one of its clients' locks.
type copyLock struct {
	ls, res    string
	key        lockspace.Key
	sess       *session // nil for an orphan
	pid        int32
	state      lockspace.LockState // 0: not accepted by a master yet
	master     uint32              // where the lock request went (0: not sent yet)
	gr, rq     lockspace.Mode
	flags      lockspace.Flags
	persistent bool
	orphan     bool
	purging    bool // an orphan whose unlock was sent
	seq        uint64
	deadline   time.Time
	hasLVB     bool
	lvb        lockspace.LVB
	lvbValid   bool
	// wrote: the lock wrote the value block in a conversion not yet
	// granted here; the grant, which carries no value, must not make the
	// copy forget it (a re-master rebuilds the value from the copies).
	wrote bool
}

// pending is a request sent to a master and not answered yet.
type pending struct {
	tag     uint64
	master  uint32
	req     *dlmv1.PeerRequest
	sess    *session
	ctag    uint64 // the client's tag
	lock    *copyLock
	inReply bool // the client reads a completion in the reply
	quiet   bool // the client wants a reply only on failure
}

// FeatEffectInReply is the PeerHello feature bit of a requesting node that
// reads the effect deciding its own request from the PeerReply.
const FeatEffectInReply = 1

type earlyMarker struct {
	from uint32
	m    *dlmv1.Marker
}

// New returns a Node that knows no membership yet (see Start).
func New(cfg Config) *Node {
	if cfg.Lease <= 0 {
		cfg.Lease = time.Second
	}
	if cfg.Toss <= 0 {
		cfg.Toss = 10 * time.Second
	}
	if cfg.Tick <= 0 {
		cfg.Tick = defaultTick
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		cfg.Log = l
	}
	return &Node{
		cfg: cfg, self: cfg.Node, log: cfg.Log,
		tables: map[string]*lockspace.Lockspace{}, lsCfg: map[string]lockspace.Config{},
		sessions: map[uint64]*session{}, locks: map[lockspace.LockID]*copyLock{},
		pend: map[uint64]*pending{}, pids: map[lockspace.Owner]int32{}, gone: map[uint32]uint64{}, rejoining: map[uint32]bool{},
		outs: map[uint32]*outLink{}, ins: map[uint32]*inLink{},
		ponged: map[uint32]time.Time{}, pongable: map[uint32]bool{},
		routes: map[directory.Key]*route{}, lookups: map[directory.Key]*lookup{}, lookupTags: map[uint64]*lookup{},
		mastered: map[directory.Key]*mastery{}, dirTable: directory.NewTable(),
	}
}

// Ready returns what the calls since the last Ready asked for, and forgets
// it.
func (n *Node) Ready() Ready {
	rd := n.rd
	n.rd = Ready{}
	return rd
}

// HasReady reports whether Ready has something.
func (n *Node) HasReady() bool {
	rd := &n.rd
	return len(rd.Messages) > 0 || len(rd.Sessions) > 0 || len(rd.Ended) > 0 || len(rd.Closed) > 0 || rd.Installed
}

// Incarnation is this dlmd's incarnation (it changes when the node fences).
func (n *Node) Incarnation() uint64 { return n.cfg.Incarnation }

// ---- output ----

// toMaster sends m on this node's link to node, opening one.
func (n *Node) toMaster(node uint32, m *dlmv1.PeerMessage) {
	o := n.outs[node]
	if o == nil {
		n.nextLink++
		o = &outLink{id: n.nextLink}
		n.outs[node] = o
	}
	n.rd.Messages = append(n.rd.Messages, Message{Link: Link{Node: node, Out: true, Inc: n.cfg.Incarnation, ID: o.id}, Msg: m})
}

// toRequester sends m on the link node opened here; it reports false when
// there is none.
func (n *Node) toRequester(node uint32, m *dlmv1.PeerMessage) bool {
	in := n.ins[node]
	if in == nil {
		return false
	}
	n.rd.Messages = append(n.rd.Messages, Message{Link: Link{Node: node, Inc: in.inc, ID: in.id}, Msg: m})
	return true
}

func (n *Node) tell(ss *session, m *dlmv1.ServerMessage) {
	if ss == nil {
		return
	}
	n.rd.Sessions = append(n.rd.Sessions, SessionMessage{Session: ss.id, Msg: m})
}

// closeOut closes this node's link to node.
func (n *Node) closeOut(node uint32) {
	if o := n.outs[node]; o != nil {
		n.rd.Closed = append(n.rd.Closed, Link{Node: node, Out: true, Inc: n.cfg.Incarnation, ID: o.id})
		delete(n.outs, node)
	}
}

// closeIn closes the link node opened here.
func (n *Node) closeIn(node uint32) {
	if in := n.ins[node]; in != nil {
		n.rd.Closed = append(n.rd.Closed, Link{Node: node, Inc: in.inc, ID: in.id})
		delete(n.ins, node)
	}
}

// closeLinks closes every link.
func (n *Node) closeLinks() {
	for _, node := range sortedNodes(n.outs) {
		n.closeOut(node)
	}
	for _, node := range sortedNodes(n.ins) {
		n.closeIn(node)
	}
}

func sortedNodes[V any](m map[uint32]V) []uint32 {
	out := make([]uint32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ---- ticks ----

// Tick runs what is due at now: the lease check, the recovery waiting for
// leases to end, the requests whose timeout passed, the retries and the
// toss sweep.
func (n *Node) Tick(now time.Time) {
	n.now = now
	if n.leaving {
		return
	}
	n.checkLease()
	if n.rec != nil {
		if n.rec.waiting {
			n.rebuild()
		}
		return
	}
	for _, name := range sortedKeys(n.tables) {
		t := n.tables[name]
		if d, ok := t.NextDeadline(); ok && !now.Before(d) {
			n.route(name, t.Tick(now))
		}
	}
	n.flushRetries()
	n.toss(now)
}

// NextWake is when Tick has something to do before the next regular tick
// (zero: nothing): the end of the recovery's wait for the lost nodes'
// leases. The shell calls Tick then, to grant as early as is safe.
func (n *Node) NextWake() time.Time {
	if n.rec != nil && n.rec.waiting && !n.leaving {
		return n.rec.wake
	}
	return time.Time{}
}

// table returns the master table of a lockspace, creating it.
func (n *Node) table(name string, cfg lockspace.Config) (*lockspace.Lockspace, error) {
	if t := n.tables[name]; t != nil {
		return t, nil
	}
	t, err := lockspace.New(name, cfg, lockspace.Cred{UID: 0})
	if err != nil {
		return nil, err
	}
	n.tables[name] = t
	n.lsCfg[name] = cfg
	return t, nil
}

// installedID is the ID requests are sent under.
func (n *Node) installedID() directory.ID { return n.last.ID }

// ---- requests from local clients ----

// submit sends a new request of a local client to its master. It is
// deferred while recovering.
func (n *Node) submit(p *pending) {
	if n.rec != nil || !n.haveLast {
		n.deferred = append(n.deferred, func() { n.submit(p) })
		return
	}
	if p.sess != nil && p.sess.closed && p.req.Op == dlmv1.Op_OP_LOCK {
		delete(n.locks, p.lock.key.ID)
		return
	}
	if p.req.Op != dlmv1.Op_OP_LOCK && n.locks[p.lock.key.ID] != p.lock {
		// The lock went while the request waited (its session ended, or
		// it was refused or released): its master may be gone too, and
		// no one would answer.
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
	if p.req.Op == dlmv1.Op_OP_LOCK {
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
	n.toMaster(p.master, &dlmv1.PeerMessage{Msg: &dlmv1.PeerMessage_Request{Request: p.req}})
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
	if !hold && (p.req.Op == dlmv1.Op_OP_LOCK || p.req.Op == dlmv1.Op_OP_CONVERT) {
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
	if ss := p.sess; ss != nil && p.req.Op == dlmv1.Op_OP_UNLOCK {
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
	if ss == nil || p.req.Op != dlmv1.Op_OP_UNLOCK || ss.unlocking[p.master] == 0 {
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
func ownEffect(from uint32, req *dlmv1.PeerRequest, effs []lockspace.Effect) (*lockspace.Effect, []lockspace.Effect) {
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
func (n *Node) onReply(p *pending, rep *dlmv1.PeerReply, own *lockspace.Effect) {
	err := ErrorOf(rep.GetStatus(), rep.GetMessage())
	if err == ErrRetry {
		n.retry(p)
		return
	}
	cl := p.lock
	req := p.req
	closed := p.sess == nil || p.sess.closed
	switch req.Op {
	case dlmv1.Op_OP_LOCK:
		if err != nil || closed && !cl.persistent {
			delete(n.locks, cl.key.ID)
		} else {
			cl.state, cl.rq, cl.seq = lockspace.StateWaiting, mode(req.Mode), rep.GetSeq()
			cl.deadline = n.deadline(req.TimeoutNanos)
		}
	case dlmv1.Op_OP_CONVERT:
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
	case dlmv1.Op_OP_UNLOCK:
		if err == nil {
			delete(n.locks, cl.key.ID)
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
		if req.Op == dlmv1.Op_OP_LOCK && err == nil {
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
	if p.req.Op == dlmv1.Op_OP_LOCK {
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
		cl.state, cl.gr, cl.rq, cl.deadline, cl.seq = lockspace.StateGranted, e.Mode, 0, time.Time{}, e.Seq
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
				delete(n.locks, cl.key.ID)
			} else {
				cl.orphan, cl.sess = true, nil
			}
			return nil, nil
		}
		return cl.sess, &dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Completion{Completion: &dlmv1.Completion{
			LockId: uint64(e.Key.ID), Granted: true, Mode: pmode(e.Mode),
			HasLvb: e.HasLVB, Lvb: lvbBytes(e), LvbValid: e.LVBValid}}}
	case lockspace.Refused:
		if e.Held {
			cl.state, cl.gr, cl.rq, cl.deadline = lockspace.StateGranted, e.Mode, 0, time.Time{}
		} else {
			delete(n.locks, cl.key.ID)
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
func (n *Node) serve(from uint32, req *dlmv1.PeerRequest) (*dlmv1.PeerReply, []lockspace.Effect) {
	rep := &dlmv1.PeerReply{Tag: req.Tag}
	fail := func(err error) (*dlmv1.PeerReply, []lockspace.Effect) {
		rep.Status, rep.Message = StatusOf(err), err.Error()
		return rep, nil
	}
	m := n.mastered[keyOf(req)]
	if m == nil {
		return fail(fmt.Errorf("dlm: %s/%s is not mastered on node %d: %w", req.Lockspace, req.Resource, n.self, ErrRetry))
	}
	now := n.now
	m.used = now
	t, err := n.table(req.Lockspace, cfgFromProto(req.Config))
	if err != nil {
		return fail(err)
	}
	owner := lockspace.Owner{Node: lockspace.NodeID(from), Client: req.Client}
	r := lockspace.Request{Owner: owner, ID: lockspace.LockID(req.LockId), Resource: req.Resource,
		Mode: mode(req.Mode), Flags: lockspace.Flags(req.Flags), Timeout: durationOf(req.TimeoutNanos), LVB: lvbOf(req.Lvb)}
	before := t.Seq()
	var effs []lockspace.Effect
	switch req.Op {
	case dlmv1.Op_OP_LOCK:
		effs, err = t.Lock(now, credFromProto(req.Cred), r)
		n.pids[owner] = req.Pid
	case dlmv1.Op_OP_CONVERT:
		effs, err = t.Convert(now, r)
	case dlmv1.Op_OP_UNLOCK:
		effs, err = t.Unlock(owner, r.ID, r.Flags, r.LVB)
	case dlmv1.Op_OP_CANCEL:
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
		if !n.toRequester(node, &dlmv1.PeerMessage{Msg: &dlmv1.PeerMessage_Effect{Effect: effectToProto(lsName, e)}}) {
			n.log.WithFields(logrus.Fields{"node": node, "effect": e.String()}).Debug("no channel from the owner's node; effect dropped")
		}
	}
}

func effectToProto(lsName string, e lockspace.Effect) *dlmv1.PeerEffect {
	pe := &dlmv1.PeerEffect{Lockspace: lsName, Kind: dlmv1.EffectKind(e.Kind), Resource: e.Resource,
		Client: e.Key.Owner.Client, LockId: uint64(e.Key.ID), Mode: pmode(e.Mode), Held: e.Held,
		Status: StatusOf(e.Err), Seq: e.Seq, HasLvb: e.HasLVB, LvbValid: e.LVBValid}
	if e.HasLVB {
		pe.Lvb = e.LVB[:]
	}
	return pe
}

func effectFromProto(node uint32, pe *dlmv1.PeerEffect) lockspace.Effect {
	e := lockspace.Effect{Kind: lockspace.EffectKind(pe.GetKind()), Resource: pe.GetResource(),
		Key:  lockspace.Key{Owner: lockspace.Owner{Node: lockspace.NodeID(node), Client: pe.GetClient()}, ID: lockspace.LockID(pe.GetLockId())},
		Mode: mode(pe.GetMode()), Held: pe.GetHeld(), Seq: pe.GetSeq(), HasLVB: pe.GetHasLvb(), LVB: lvbOf(pe.GetLvb()), LVBValid: pe.GetLvbValid()}
	if pe.GetStatus() != dlmv1.Status_STATUS_OK {
		e.Err = ErrorOf(pe.GetStatus(), "")
	}
	return e
}

// onPeerRequest handles a request from another node's owner.
func (n *Node) onPeerRequest(from uint32, req *dlmv1.PeerRequest) {
	id := directory.ID{Epoch: req.Epoch, Round: req.Round}
	switch {
	case n.rec != nil && id == n.rec.id:
		n.deferred = append(n.deferred, func() { n.onPeerRequest(from, req) })
		return
	case n.rec != nil || !n.haveLast || id != n.last.ID:
		n.toRequester(from, &dlmv1.PeerMessage{Msg: &dlmv1.PeerMessage_Reply{Reply: &dlmv1.PeerReply{
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
	n.toRequester(from, &dlmv1.PeerMessage{Msg: &dlmv1.PeerMessage_Reply{Reply: rep}})
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

// ---- peer messages ----

// Step handles a message that arrived on link at now. A message of a link
// that is not the current one (closed, or replaced since) is dropped: it
// was meant for an earlier dlmd of ours or came from an earlier one of the
// peer's.
func (n *Node) Step(now time.Time, link Link, msg *dlmv1.PeerMessage) {
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
func (n *Node) onFromMaster(node uint32, msg *dlmv1.PeerMessage) {
	switch m := msg.Msg.(type) {
	case *dlmv1.PeerMessage_Reply:
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
	case *dlmv1.PeerMessage_Effect:
		n.onEffect(m.Effect.GetLockspace(), effectFromProto(n.self, m.Effect))
	case *dlmv1.PeerMessage_MarkerAck:
		n.onMarkerAck(node, m.MarkerAck)
	case *dlmv1.PeerMessage_LookupReply:
		n.onLookupReply(node, m.LookupReply)
	}
}

// onFromRequester handles what a peer sends on the link it opened.
func (n *Node) onFromRequester(from uint32, msg *dlmv1.PeerMessage) {
	switch m := msg.Msg.(type) {
	case *dlmv1.PeerMessage_Request:
		n.onPeerRequest(from, m.Request)
	case *dlmv1.PeerMessage_OwnerExit:
		if n.rec != nil {
			n.deferred = append(n.deferred, func() { n.onOwnerExit(from, m.OwnerExit.GetClient()) })
			return
		}
		n.onOwnerExit(from, m.OwnerExit.GetClient())
	case *dlmv1.PeerMessage_Marker:
		n.onMarker(from, m.Marker)
	case *dlmv1.PeerMessage_Copies:
		n.onCopies(from, m.Copies)
	case *dlmv1.PeerMessage_CopiesDone:
		n.onCopiesDone(from, directory.ID{Epoch: m.CopiesDone.GetEpoch(), Round: m.CopiesDone.GetRound()})
	case *dlmv1.PeerMessage_Lookup:
		n.onLookup(from, m.Lookup)
	case *dlmv1.PeerMessage_Remove:
		n.onRemove(from, m.Remove)
	case *dlmv1.PeerMessage_Leave:
		n.onLeave(from, m.Leave.GetIncarnation())
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
			n.toMaster(m, &dlmv1.PeerMessage{Msg: &dlmv1.PeerMessage_Leave{Leave: &dlmv1.Leave{Incarnation: n.cfg.Incarnation}}})
		}
	}
	for _, id := range sortedNodes64(n.sessions) {
		n.sessions[id].closed = true
		n.rd.Ended = append(n.rd.Ended, Ended{Session: id})
		delete(n.sessions, id)
	}
	// Its locks and tables are gone as far as the others are concerned.
	n.tables = map[string]*lockspace.Lockspace{}
	n.locks = map[lockspace.LockID]*copyLock{}
	n.pend = map[uint64]*pending{}
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
