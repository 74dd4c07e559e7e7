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
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// Config is what a Node needs.
type Config struct {
	// Node is this node's number.
	Node uint32
	// Incarnation distinguishes this run of dlmd from earlier ones on the
	// node; a fence moves to a higher one.
	Incarnation uint64
	// Lease is this node's setting of how long its locks stay valid
	// without contact with a majority of the members' dlmd; the lease in
	// use is the largest setting of the members (see lease.go). Default 1s.
	Lease time.Duration
	// Toss is how long a master keeps a resource after its last lock
	// went, and a node remembers a master it does not use. Default 10s.
	Toss time.Duration
	// Tick is how often the shell calls Tick (it bounds the lease margin).
	// Default 20ms.
	Tick time.Duration
	// Limits bound what the local clients may make this node hold.
	Limits Limits
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
	Msg  *dlmpeerv1.PeerMessage
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
	uidLocks map[uint32]int // copies by owner uid (see addLock)
	// uidPending counts the pending requests of the sessions by uid.
	uidPending map[uint32]int
	pend       map[uint64]*pending
	outbox     []*pending
	deferred   []func()
	pids       map[lockspace.Owner]int32
	members    directory.Members
	dir        []uint32
	last       directory.Completed
	haveLast   bool
	rec        *recovery
	early      []earlyMarker
	retries    []*pending // sent again at the next tick, in order
	// gone are the nodes whose dlmd said goodbye (its incarnation), until
	// a new dlmd of theirs shows up; rejoining those whose new dlmd showed
	// up and has not answered a ping yet. Neither counts for the lease; a
	// recovery does not wait for the gone.
	gone      map[uint32]uint64
	rejoining map[uint32]bool
	// leaving: this dlmd said goodbye and is stopping.
	leaving bool
	// era is the fencing-token era of the installed directory, planned
	// the highest era of a plan this dlmd computed (it survives a fence;
	// see tokens.go).
	era, planned uint64

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
	// heard is what each node last said of its lease; inUse the lease
	// in use when last noted (see lease.go).
	heard map[uint32]peerLease
	inUse time.Duration

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
	// since is when the link was opened (see heard).
	since time.Time
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
	// nlocks counts the copies charged to the session (see addLock),
	// pending its requests not answered yet (see answered); uncounted:
	// the session ended and its pending requests no longer count for its
	// uid.
	nlocks, pending int
	uncounted       bool
}

// copyLock is this node's copy of one of its clients' locks.
type copyLock struct {
	ls, res    string
	key        lockspace.Key
	sess       *session // nil for an orphan
	owner      *session // the session the lock is counted for (see addLock)
	pid        int32
	uid        uint32              // the owner's uid: only it and root may purge the orphan
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
	// token: the fencing token of the lock's grant in PW or EX (0
	// otherwise), from the master's effect.
	token uint64
	// wrote: the lock wrote the value block in a conversion not yet
	// granted here; the grant, which carries no value, must not make the
	// copy forget it (a re-master rebuilds the value from the copies).
	wrote bool
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
	counted bool // counted in sess.pending until answered
}

// FeatEffectInReply is the PeerHello feature bit of a requesting node that
// reads the effect deciding its own request from the PeerReply.
const FeatEffectInReply = 1

// FeatByteNames is the PeerHello feature bit of a dlmd that reads
// resource names of any bytes: an older one decodes them as protobuf
// strings and fails the whole message (breaking the link, or a recovery)
// on one that is not UTF-8. Until every member has said it, this node
// refuses such names (see byteNamesErr).
const FeatByteNames = 2

type earlyMarker struct {
	from uint32
	m    *dlmpeerv1.Marker
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
		sessions: map[uint64]*session{}, locks: map[lockspace.LockID]*copyLock{}, uidLocks: map[uint32]int{}, uidPending: map[uint32]int{},
		pend: map[uint64]*pending{}, pids: map[lockspace.Owner]int32{}, gone: map[uint32]uint64{}, rejoining: map[uint32]bool{},
		outs: map[uint32]*outLink{}, ins: map[uint32]*inLink{},
		ponged: map[uint32]time.Time{}, pongable: map[uint32]bool{}, heard: map[uint32]peerLease{}, inUse: cfg.Lease,
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
func (n *Node) toMaster(node uint32, m *dlmpeerv1.PeerMessage) {
	o := n.outs[node]
	if o == nil {
		n.nextLink++
		o = &outLink{id: n.nextLink, since: n.now}
		n.outs[node] = o
	}
	n.rd.Messages = append(n.rd.Messages, Message{Link: Link{Node: node, Out: true, Inc: n.cfg.Incarnation, ID: o.id}, Msg: m})
}

// toRequester sends m on the link node opened here; it reports false when
// there is none.
func (n *Node) toRequester(node uint32, m *dlmpeerv1.PeerMessage) bool {
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
// leases to end, the requests whose timeout passed, what waits on a
// silent master (silent.go), the retries and the toss sweep.
func (n *Node) Tick(now time.Time) {
	n.now = now
	if n.leaving {
		return
	}
	n.noteLease()
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
	n.failSilent()
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
