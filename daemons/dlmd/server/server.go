// Package server is dlmd's shell around the pure lock table
// (daemons/dlmd/lockspace) and directory (daemons/dlmd/directory): one
// goroutine owns every table and copy and runs every step; the local API
// (client sessions on the Unix socket), the peer channels to the other
// nodes' dlmd and the membership watcher feed it closures, and it sends
// what the core's effects ask for.
//
// Each node keeps, besides the tables of the resources it masters, a copy
// of every lock its own clients hold (resource, state, modes, flags,
// sequence number, the value block it saw), updated only from the master's
// replies and effects. Masters are found through the directory
// (route.go: first-requester mastering). On every membership change the
// recovery of package directory runs (see its documentation): the copies
// rebuild the resources whose master was lost, the lost nodes' locks are
// dropped where the master stays, and the directory is registered anew.
package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	"github.com/openssi/openssi/internal/rpc"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// Config is what the shell needs from main.
type Config struct {
	// Node is this node's number.
	Node uint32
	// Incarnation distinguishes this run of dlmd from earlier ones on the
	// node (main uses the start time in nanoseconds).
	Incarnation uint64
	// DeadlockInterval is how often the coordinator (the lowest member)
	// looks for deadlocks across the cluster. Default 1s.
	DeadlockInterval time.Duration
	// Source holds the inter-node TLS certificates.
	Source rpc.Source
	// Lookup returns the "ip:port" of node's dlmd (rpc.LookupRegistered).
	Lookup func(node uint32) (string, error)
	// Dial adds options to the peer connections (tests use it to cut
	// the network).
	Dial []rpc.DialOption
	// Lease is how long this node's locks stay valid without contact with
	// a majority of the members' dlmd (see fence). Default 1s.
	Lease time.Duration
	// Toss is how long a master keeps a resource after its last lock
	// went, and a node remembers a master it does not use. Default 10s.
	Toss time.Duration
	// Lockspaces keeps the lockspaces' owners (Consul KV).
	Lockspaces LockspaceStore
	// Log is the daemon's logger.
	Log logrus.FieldLogger
}

// tick is the granularity of request timeouts and of the watchdog beat.
const tick = 20 * time.Millisecond

// Server is the dlmd shell.
type Server struct {
	cfg   Config
	self  uint32
	log   logrus.FieldLogger
	ops   chan func()
	stop  chan struct{}
	beat  func()
	ready func()

	// Owned by the loop.
	tables   map[string]*lockspace.Lockspace
	lsCfg    map[string]lockspace.Config
	sessions map[uint64]*session
	locks    map[lockspace.LockID]*copyLock
	pend     map[uint64]*pending
	outbox   []*pending
	deferred []func()
	peersOut map[uint32]*peerOut
	peersIn  map[uint32]*inStream
	pids     map[lockspace.Owner]int32
	members  directory.Members
	dir      []uint32
	last     directory.Completed
	haveLast bool
	rec      *recovery
	early    []earlyMarker
	retries  []*pending // sent again at the next tick, in order

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

	nextLock  uint64
	nextTag   uint64
	nextSess  uint64
	nextLink  uint64
	readyDone bool

	// base is the origin of s.mono().
	base time.Time
	// ponged is when this node last answered each node's ping; pongable
	// the nodes it answers (the members).
	pongMu   sync.Mutex
	ponged   map[uint32]time.Time
	pongable map[uint32]bool

	connMu sync.Mutex
	conns  map[uint32]*grpc.ClientConn
	// links counts the goroutines of the links to other nodes: Run
	// joins them when it stops.
	links sync.WaitGroup
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
}

// pending is a request sent to a master and not answered yet.
type pending struct {
	tag     uint64
	master  uint32
	req     *dlmpeerv1.PeerRequest
	sess    *session
	ctag    uint64 // the client's tag
	lock    *copyLock
	inReply bool // the client reads a completion in the reply
	quiet   bool // the client wants a reply only on failure
}

// featEffectInReply is the PeerHello feature bit of a requesting node that
// reads the effect deciding its own request from the PeerReply.
const featEffectInReply = 1

type earlyMarker struct {
	from uint32
	m    *dlmpeerv1.Marker
	in   *inStream
}

// New returns a shell; Run starts it.
func New(cfg Config) *Server {
	if cfg.DeadlockInterval <= 0 {
		cfg.DeadlockInterval = time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = time.Second
	}
	if cfg.Toss <= 0 {
		cfg.Toss = 10 * time.Second
	}
	return &Server{
		cfg: cfg, self: cfg.Node, log: cfg.Log,
		ops: make(chan func(), 4096), stop: make(chan struct{}),
		tables: map[string]*lockspace.Lockspace{}, lsCfg: map[string]lockspace.Config{},
		sessions: map[uint64]*session{}, locks: map[lockspace.LockID]*copyLock{},
		pend: map[uint64]*pending{}, peersOut: map[uint32]*peerOut{}, peersIn: map[uint32]*inStream{},
		pids: map[lockspace.Owner]int32{}, conns: map[uint32]*grpc.ClientConn{},
		base: time.Now(), ponged: map[uint32]time.Time{}, pongable: map[uint32]bool{},
		routes: map[directory.Key]*route{}, lookups: map[directory.Key]*lookup{}, lookupTags: map[uint64]*lookup{},
		mastered: map[directory.Key]*mastery{}, dirTable: directory.NewTable(),
	}
}

// do runs f on the loop; it reports false when the loop has stopped.
func (s *Server) do(f func()) bool {
	select {
	case s.ops <- f:
		return true
	case <-s.stop:
		return false
	}
}

// call runs f on the loop and waits for it.
func (s *Server) call(ctx context.Context, f func()) error {
	done := make(chan struct{})
	if !s.do(func() { f(); close(done) }) {
		return fmt.Errorf("dlm: dlmd is stopping")
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return fmt.Errorf("dlm: dlmd is stopping")
	}
}

// Run is the loop. beat feeds the watchdog; ready is called once the first
// recovery has installed a directory (the node can grant). It returns when
// ctx ends.
func (s *Server) Run(ctx context.Context, beat, ready func()) error {
	s.beat, s.ready = beat, ready
	var detector sync.WaitGroup
	detector.Add(1)
	go func() {
		defer detector.Done()
		s.deadlockLoop(ctx)
	}()
	t := time.NewTicker(tick)
	defer t.Stop()
	// Stop the links, let their goroutines and the deadlock detector past
	// s.do and s.call, join them, and close the connections a link may
	// have dialled meanwhile.
	defer s.closeConns()
	defer detector.Wait()
	defer s.links.Wait()
	defer close(s.stop)
	defer s.closePeers()
	for {
		select {
		case <-ctx.Done():
			return nil
		case f := <-s.ops:
			f()
			// Run what queued up without re-arming the select.
			for n := 0; n < 256; n++ {
				select {
				case f := <-s.ops:
					f()
					continue
				default:
				}
				break
			}
		case now := <-t.C:
			if s.beat != nil {
				s.beat()
			}
			s.checkLease()
			if s.rec == nil {
				s.tick(now)
				s.flushRetries()
				s.toss(now)
			}
		}
	}
}

// tick expires the requests whose timeout passed.
func (s *Server) tick(now time.Time) {
	for _, name := range sortedKeys(s.tables) {
		t := s.tables[name]
		if d, ok := t.NextDeadline(); ok && !now.Before(d) {
			s.route(name, t.Tick(now))
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// table returns the master table of a lockspace, creating it.
func (s *Server) table(name string, cfg lockspace.Config) (*lockspace.Lockspace, error) {
	if t := s.tables[name]; t != nil {
		return t, nil
	}
	t, err := lockspace.New(name, cfg, lockspace.Cred{UID: 0})
	if err != nil {
		return nil, err
	}
	s.tables[name] = t
	s.lsCfg[name] = cfg
	return t, nil
}

// installedID is the ID requests are sent under.
func (s *Server) installedID() directory.ID { return s.last.ID }

// ---- requests from local clients ----

// submit sends a new request of a local client to its master. The loop
// defers it while recovering.
func (s *Server) submit(p *pending) {
	if s.rec != nil || !s.haveLast {
		s.deferred = append(s.deferred, func() { s.submit(p) })
		return
	}
	if p.sess != nil && p.sess.closed && p.req.Op == dlmpeerv1.Op_OP_LOCK {
		delete(s.locks, p.lock.key.ID)
		return
	}
	id := s.installedID()
	p.req.Epoch, p.req.Round = id.Epoch, id.Round
	p.master = s.masterFor(p)
	if p.master == 0 {
		s.awaitLookup(p, false)
		return
	}
	if p.req.Op == dlmpeerv1.Op_OP_LOCK {
		p.lock.master = p.master
	}
	if s.park(p) {
		return
	}
	s.nextTag++
	p.tag = s.nextTag
	p.req.Tag = p.tag
	if p.master == s.self {
		rep, effs := s.serve(s.self, p.req)
		own, effs := ownEffect(s.self, p.req, effs)
		s.onReply(p, rep, own)
		s.route(p.req.Lockspace, effs)
		return
	}
	s.addPending(p)
	s.out(p.master).log.Push(&dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Request{Request: p.req}})
}

// park holds back a session's request while an unlock of the session is
// in flight to another master, and everything after a held request.
// Unlock does not wait for dlmd, so without this the session's next
// request could wait at one master while another still shows the session
// holding what it released: the wait-for graph would show a cycle that
// does not exist, and a request would fail as a deadlock victim. An
// unlock and the next request to the same master keep their order on the
// link and need not wait.
func (s *Server) park(p *pending) bool {
	ss := p.sess
	if ss == nil {
		return false
	}
	hold := len(ss.parked) > 0
	if !hold && (p.req.Op == dlmpeerv1.Op_OP_LOCK || p.req.Op == dlmpeerv1.Op_OP_CONVERT) {
		for m, n := range ss.unlocking {
			if n > 0 && m != p.master {
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
func (s *Server) addPending(p *pending) {
	s.pend[p.tag] = p
	if ss := p.sess; ss != nil && p.req.Op == dlmpeerv1.Op_OP_UNLOCK {
		if ss.unlocking == nil {
			ss.unlocking = map[uint32]int{}
		}
		ss.unlocking[p.master]++
	}
}

// dropPending unfiles a request (answered, or to be sent again after a
// recovery) and sends what its session held back for it.
func (s *Server) dropPending(p *pending) {
	delete(s.pend, p.tag)
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
		s.submit(q)
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
func (s *Server) onReply(p *pending, rep *dlmpeerv1.PeerReply, own *lockspace.Effect) {
	err := ErrorOf(rep.GetStatus(), rep.GetMessage())
	if err == ErrRetry {
		s.retry(p)
		return
	}
	cl := p.lock
	req := p.req
	closed := p.sess == nil || p.sess.closed
	switch req.Op {
	case dlmpeerv1.Op_OP_LOCK:
		if err != nil || closed && !cl.persistent {
			delete(s.locks, cl.key.ID)
		} else {
			cl.state, cl.rq, cl.seq = lockspace.StateWaiting, mode(req.Mode), rep.GetSeq()
			cl.deadline = deadline(req.TimeoutNanos)
		}
	case dlmpeerv1.Op_OP_CONVERT:
		if err == nil && cl.state == lockspace.StateGranted {
			m := mode(req.Mode)
			fl := lockspace.Flags(req.Flags)
			if cl.gr.Covers(m) {
				if cl.gr == lockspace.PW || cl.gr == lockspace.EX {
					switch {
					case fl&lockspace.InvalidateLVB != 0:
						cl.hasLVB, cl.lvbValid = true, false
					case fl&lockspace.ValBlk != 0:
						cl.hasLVB, cl.lvbValid, cl.lvb = true, true, lvbOf(req.Lvb)
					}
				}
			} else {
				cl.state, cl.rq, cl.seq = lockspace.StateConverting, m, rep.GetSeq()
				cl.deadline = deadline(req.TimeoutNanos)
			}
			cl.flags = fl
		}
	case dlmpeerv1.Op_OP_UNLOCK:
		if err == nil {
			delete(s.locks, cl.key.ID)
		} else {
			cl.purging = false
		}
	}
	var extra *dlmv1.ServerMessage
	var to *session
	if own != nil {
		to, extra = s.applyEffect(req.Lockspace, *own)
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
			p.sess.send(&dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Reply{Reply: r}})
		}
	}
	if extra != nil {
		to.send(extra)
	}
}

func deadline(nanos int64) time.Time {
	if nanos <= 0 {
		return time.Time{}
	}
	return time.Now().Add(time.Duration(nanos))
}

// retry sends a request again once the master can take it: after the
// recovery in progress, or at the next tick. A lock request looks its
// master up again (the one it asked may have given the resource up).
func (s *Server) retry(p *pending) {
	if s.rec != nil {
		s.outbox = append(s.outbox, p)
		return
	}
	if p.req.Op == dlmpeerv1.Op_OP_LOCK {
		k := keyOf(p.req)
		p.lock.master = 0
		delete(s.routes, k)
		s.awaitLookup(p, true)
		return
	}
	s.retries = append(s.retries, p)
}

// onEffect applies an effect of a master for one of this node's owners.
func (s *Server) onEffect(lsName string, e lockspace.Effect) {
	if to, m := s.applyEffect(lsName, e); m != nil {
		to.send(m)
	}
}

// applyEffect applies an effect to this node's copy of the lock and
// returns what its session must be told (nil: nothing).
func (s *Server) applyEffect(lsName string, e lockspace.Effect) (*session, *dlmv1.ServerMessage) {
	cl := s.locks[e.Key.ID]
	if cl == nil || cl.key != e.Key || cl.ls != lsName {
		return nil, nil
	}
	switch e.Kind {
	case lockspace.Granted:
		cl.state, cl.gr, cl.rq, cl.deadline, cl.seq = lockspace.StateGranted, e.Mode, 0, time.Time{}, e.Seq
		if e.HasLVB {
			cl.hasLVB, cl.lvb, cl.lvbValid = true, e.LVB, e.LVBValid
		} else if e.Mode == lockspace.PR || e.Mode == lockspace.PW || e.Mode == lockspace.EX {
			cl.hasLVB = false // it did not read the value: its copy must not vouch for it
		}
		if cl.sess == nil || cl.sess.closed {
			if !cl.persistent {
				delete(s.locks, cl.key.ID)
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
			delete(s.locks, cl.key.ID)
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
func (s *Server) serve(from uint32, req *dlmpeerv1.PeerRequest) (*dlmpeerv1.PeerReply, []lockspace.Effect) {
	rep := &dlmpeerv1.PeerReply{Tag: req.Tag}
	fail := func(err error) (*dlmpeerv1.PeerReply, []lockspace.Effect) {
		rep.Status, rep.Message = StatusOf(err), wireMessage(err)
		return rep, nil
	}
	m := s.mastered[keyOf(req)]
	if m == nil {
		return fail(fmt.Errorf("dlm: %s/%s is not mastered on node %d: %w", req.Lockspace, req.Resource, s.self, ErrRetry))
	}
	now := time.Now()
	m.used = now
	t, err := s.table(req.Lockspace, cfgFromProto(req.Config))
	if err != nil {
		return fail(err)
	}
	owner := lockspace.Owner{Node: lockspace.NodeID(from), Client: req.Client}
	r := lockspace.Request{Owner: owner, ID: lockspace.LockID(req.LockId), Resource: req.Resource,
		Mode: mode(req.Mode), Flags: lockspace.Flags(req.Flags), Timeout: durationOf(req.TimeoutNanos), LVB: lvbOf(req.Lvb)}
	before := t.Seq()
	var effs []lockspace.Effect
	switch req.Op {
	case dlmpeerv1.Op_OP_LOCK:
		effs, err = t.Lock(now, credFromProto(req.Cred), r)
		s.pids[owner] = req.Pid
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

// route delivers effects to their owners: here, or on the channel their
// node opened to us.
func (s *Server) route(lsName string, effs []lockspace.Effect) {
	for _, e := range effs {
		n := uint32(e.Key.Owner.Node)
		if n == s.self {
			s.onEffect(lsName, e)
			continue
		}
		in := s.peersIn[n]
		if in == nil {
			s.log.WithFields(logrus.Fields{"node": n, "effect": e.String()}).Debug("no channel from the owner's node; effect dropped")
			continue
		}
		in.log.Push(&dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Effect{Effect: effectToProto(lsName, e)}})
	}
}

func effectToProto(lsName string, e lockspace.Effect) *dlmpeerv1.PeerEffect {
	pe := &dlmpeerv1.PeerEffect{Lockspace: lsName, Kind: peffectKind(e.Kind), Resource: e.Resource,
		Client: e.Key.Owner.Client, LockId: uint64(e.Key.ID), Mode: pmode(e.Mode), Held: e.Held,
		Status: StatusOf(e.Err), Seq: e.Seq, HasLvb: e.HasLVB, LvbValid: e.LVBValid}
	if e.HasLVB {
		pe.Lvb = e.LVB[:]
	}
	return pe
}

func effectFromProto(node uint32, pe *dlmpeerv1.PeerEffect) lockspace.Effect {
	e := lockspace.Effect{Kind: effectKind(pe.GetKind()), Resource: pe.GetResource(),
		Key:  lockspace.Key{Owner: lockspace.Owner{Node: lockspace.NodeID(node), Client: pe.GetClient()}, ID: lockspace.LockID(pe.GetLockId())},
		Mode: mode(pe.GetMode()), Held: pe.GetHeld(), Seq: pe.GetSeq(), HasLVB: pe.GetHasLvb(), LVB: lvbOf(pe.GetLvb()), LVBValid: pe.GetLvbValid()}
	if pe.GetStatus() != dlmv1.Status_STATUS_OK {
		e.Err = ErrorOf(pe.GetStatus(), "")
	}
	return e
}

// onPeerRequest handles a request from another node's owner.
func (s *Server) onPeerRequest(from uint32, in *inStream, req *dlmpeerv1.PeerRequest) {
	id := directory.ID{Epoch: req.Epoch, Round: req.Round}
	switch {
	case s.rec != nil && id == s.rec.id:
		s.deferred = append(s.deferred, func() { s.onPeerRequest(from, in, req) })
		return
	case s.rec != nil || !s.haveLast || id != s.last.ID:
		in.log.Push(&dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Reply{Reply: &dlmpeerv1.PeerReply{
			Tag: req.Tag, Status: dlmv1.Status_STATUS_RETRY, Message: "recovering"}}})
		return
	}
	rep, effs := s.serve(from, req)
	if in.features&featEffectInReply != 0 {
		var own *lockspace.Effect
		if own, effs = ownEffect(from, req, effs); own != nil {
			rep.Effect = effectToProto(req.Lockspace, *own)
		}
	}
	in.log.Push(&dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Reply{Reply: rep}})
	s.route(req.Lockspace, effs)
}

// onOwnerExit handles the exit of an owner on node (here or a peer) on the
// tables this node masters.
func (s *Server) onOwnerExit(node uint32, client uint64) {
	o := lockspace.Owner{Node: lockspace.NodeID(node), Client: client}
	for _, name := range sortedKeys(s.tables) {
		s.route(name, s.tables[name].OwnerExit(o))
	}
	delete(s.pids, o)
}

// ---- what the requesting node receives from a master ----

func (s *Server) onFromMaster(node uint32, msg *dlmpeerv1.PeerMessage) {
	switch m := msg.Msg.(type) {
	case *dlmpeerv1.PeerMessage_Reply:
		p := s.pend[m.Reply.GetTag()]
		if p == nil || p.master != node {
			return
		}
		s.dropPending(p)
		var own *lockspace.Effect
		if pe := m.Reply.GetEffect(); pe != nil {
			e := effectFromProto(s.self, pe)
			own = &e
		}
		s.onReply(p, m.Reply, own)
	case *dlmpeerv1.PeerMessage_Effect:
		s.onEffect(m.Effect.GetLockspace(), effectFromProto(s.self, m.Effect))
	case *dlmpeerv1.PeerMessage_MarkerAck:
		s.onMarkerAck(node, m.MarkerAck)
	case *dlmpeerv1.PeerMessage_LookupReply:
		s.onLookupReply(node, m.LookupReply)
	}
}

// onFromRequester handles what a peer sends on the channel it opened.
func (s *Server) onFromRequester(in *inStream, msg *dlmpeerv1.PeerMessage) {
	switch m := msg.Msg.(type) {
	case *dlmpeerv1.PeerMessage_Request:
		s.onPeerRequest(in.node, in, m.Request)
	case *dlmpeerv1.PeerMessage_OwnerExit:
		if s.rec != nil {
			s.deferred = append(s.deferred, func() { s.onOwnerExit(in.node, m.OwnerExit.GetClient()) })
			return
		}
		s.onOwnerExit(in.node, m.OwnerExit.GetClient())
	case *dlmpeerv1.PeerMessage_Marker:
		s.onMarker(in.node, in, m.Marker)
	case *dlmpeerv1.PeerMessage_Copies:
		s.onCopies(in.node, m.Copies)
	case *dlmpeerv1.PeerMessage_CopiesDone:
		s.onCopiesDone(in.node, directory.ID{Epoch: m.CopiesDone.GetEpoch(), Round: m.CopiesDone.GetRound()})
	case *dlmpeerv1.PeerMessage_Lookup:
		s.onLookup(in, m.Lookup)
	case *dlmpeerv1.PeerMessage_Remove:
		s.onRemove(in.node, m.Remove)
	}
}

var timeZero time.Time
