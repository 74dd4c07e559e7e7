package node

import (
	"fmt"
	"slices"
	"time"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// Mastering is first-requester, as in fs/dlm. The directory node of a
// resource (the rendezvous-hash winner among the members) records its
// master; a node that needs a resource's master and does not know it asks
// the directory node (a lookup), which makes the asking node the master
// when the resource has none. A resource a node's own clients use is
// therefore mastered on that node, and its locks need no network. A
// master keeps a resource for Config.Toss after its last lock went, then
// gives it up (Remove); requesters forget a master they have not used for
// as long. A request reaching a node that no longer masters its resource
// is answered STATUS_RETRY and looked up again.

// tossBatch bounds the entries one tick's sweep looks at, so that a
// large directory never stalls the loop.
const tossBatch = 4096

// route is a requester's knowledge of a resource's master.
type route struct {
	node uint32
	used time.Time
}

// mastery is this node's mastership of a resource.
type mastery struct {
	used time.Time
	// floor: every fencing token this node grants on the resource is
	// above it (see tokenFloor); the table's counter is raised to it
	// before each request.
	floor uint64
}

// tossItem is a route or mastery to look at once due: gone by then when
// unused for Config.Toss (and, for a mastery, without locks). Each route
// and mastery has one item; an item whose entry was replaced is dropped.
type tossItem struct {
	k   directory.Key
	due time.Time
	r   *route
	m   *mastery
}

// becomeMaster records that this node masters k, granting fencing tokens
// above floor.
func (n *Node) becomeMaster(k directory.Key, now time.Time, floor uint64) {
	m := &mastery{used: now, floor: floor}
	n.mastered[k] = m
	n.tossQ = append(n.tossQ, tossItem{k: k, due: now.Add(n.cfg.Toss), m: m})
}

// learnRoute records that node masters k.
func (n *Node) learnRoute(k directory.Key, node uint32, now time.Time) {
	r := &route{node: node, used: now}
	n.routes[k] = r
	n.tossQ = append(n.tossQ, tossItem{k: k, due: now.Add(n.cfg.Toss), r: r})
}

// lookup is a lookup of a resource's master, in flight or due at the next
// tick, with the requests waiting for it in order.
type lookup struct {
	key     directory.Key
	tag     uint64
	dir     uint32
	sent    bool
	waiting []*pending
}

func keyOf(req *dlmpeerv1.PeerRequest) directory.Key {
	return directory.Key{Lockspace: req.Lockspace, Resource: string(req.Resource)}
}

// masterFor returns the master to send p to (0: look it up). A request on
// an accepted lock goes to that lock's master; everything else on a
// resource queues behind a lookup of it in progress.
func (n *Node) masterFor(p *pending) uint32 {
	if p.req.Op != dlmpeerv1.Op_OP_LOCK && p.lock != nil && p.lock.master != 0 {
		return p.lock.master
	}
	k := keyOf(p.req)
	if n.lookups[k] != nil {
		return 0
	}
	if _, ok := n.mastered[k]; ok {
		return n.self
	}
	if r := n.routes[k]; r != nil {
		r.used = n.now
		return r.node
	}
	return 0
}

// awaitLookup queues p behind the lookup of its resource's master,
// starting one (sent now, or at the next tick when later is set: the
// answer just proved stale).
func (n *Node) awaitLookup(p *pending, later bool) {
	k := keyOf(p.req)
	if p.tag == 0 {
		n.nextTag++
		p.tag = n.nextTag // keeps its place if it ends up in the outbox
	}
	l := n.lookups[k]
	if l != nil {
		l.waiting = append(l.waiting, p)
		return
	}
	l = &lookup{key: k, waiting: []*pending{p}}
	n.lookups[k] = l
	if !later {
		n.sendLookup(l)
	}
}

// sendLookup asks the directory node; this node's own part of the
// directory answers at once.
func (n *Node) sendLookup(l *lookup) {
	l.dir = directory.Master(n.dir, l.key.Lockspace, l.key.Resource)
	if l.dir == n.self {
		n.resolved(l, n.dirTable.Lookup(l.key, n.self), n.dirTable.TokenFloor())
		return
	}
	n.nextTag++
	l.tag, l.sent = n.nextTag, true
	n.lookupTags[l.tag] = l
	id := n.installedID()
	n.toMaster(l.dir, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Lookup{Lookup: &dlmpeerv1.Lookup{
		Tag: l.tag, Epoch: id.Epoch, Round: id.Round, Lockspace: l.key.Lockspace, Resource: []byte(l.key.Resource)}}})
}

// resolved records a lookup's answer (and the directory node's token
// floor) and sends what waited for it.
func (n *Node) resolved(l *lookup, master uint32, floor uint64) {
	delete(n.lookups, l.key)
	delete(n.lookupTags, l.tag)
	now := n.now
	if master == n.self {
		n.becomeMaster(l.key, now, max(floor, tokenBase(n.era)))
	} else {
		n.learnRoute(l.key, master, now)
	}
	for _, p := range l.waiting {
		n.submit(p)
	}
}

// onLookupReply handles a directory node's answer.
func (n *Node) onLookupReply(from uint32, rep *dlmpeerv1.LookupReply) {
	l := n.lookupTags[rep.GetTag()]
	if l == nil || l.dir != from || !l.sent {
		return
	}
	switch st := rep.GetStatus(); {
	case st == dlmv1.Status_STATUS_OK && slices.Contains(n.dir, rep.GetMaster()):
		n.resolved(l, rep.GetMaster(), rep.GetTokenFloor())
	case st == dlmv1.Status_STATUS_OK || st == dlmv1.Status_STATUS_RETRY:
		delete(n.lookupTags, l.tag)
		l.sent = false
		if n.rec != nil {
			n.dropLookup(l)
		}
	default:
		// The directory node refused the name: so would any master.
		delete(n.lookups, l.key)
		delete(n.lookupTags, l.tag)
		fail := &dlmpeerv1.PeerReply{Status: st, Message: rep.GetMessage()}
		for _, p := range l.waiting {
			n.onReply(p, fail, nil)
		}
	}
}

// dropLookup ends a lookup during a recovery: what waited for it is sent
// again, in order, after the recovery.
func (n *Node) dropLookup(l *lookup) {
	delete(n.lookups, l.key)
	delete(n.lookupTags, l.tag)
	n.outbox = append(n.outbox, l.waiting...)
}

// dropLookups ends every lookup (a recovery is about to change the
// directory nodes); the survivors' answers have all arrived.
func (n *Node) dropLookups() {
	ls := make([]*lookup, 0, len(n.lookups))
	for _, l := range n.lookups {
		ls = append(ls, l)
	}
	sortLookups(ls)
	for _, l := range ls {
		n.dropLookup(l)
	}
}

// sortLookups orders lookups as their first requests were made.
func sortLookups(ls []*lookup) {
	slices.SortFunc(ls, func(a, b *lookup) int { return int(a.waiting[0].tag) - int(b.waiting[0].tag) })
}

// onLookup answers a lookup from node from as a directory node.
func (n *Node) onLookup(from uint32, lk *dlmpeerv1.Lookup) {
	id := directory.ID{Epoch: lk.GetEpoch(), Round: lk.GetRound()}
	rep := &dlmpeerv1.LookupReply{Tag: lk.GetTag()}
	k := directory.Key{Lockspace: lk.GetLockspace(), Resource: string(lk.GetResource())}
	switch {
	case n.rec != nil && id == n.rec.id:
		n.deferred = append(n.deferred, func() { n.onLookup(from, lk) })
		return
	case n.rec != nil || !n.haveLast || id != n.last.ID:
		rep.Status, rep.Message = dlmv1.Status_STATUS_RETRY, "recovering"
	case ValidStoredLockspace(k.Lockspace) != nil || k.Resource == "" || len(k.Resource) > lockspace.MaxResourceName:
		rep.Status, rep.Message = dlmv1.Status_STATUS_INVALID, fmt.Sprintf("bad resource %q in lockspace %q", k.Resource, k.Lockspace)
	case directory.Master(n.dir, k.Lockspace, k.Resource) != n.self:
		rep.Status, rep.Message = dlmv1.Status_STATUS_RETRY, "not the directory node"
	default:
		rep.Master, rep.TokenFloor = n.dirTable.Lookup(k, from), n.dirTable.TokenFloor()
	}
	n.toRequester(from, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_LookupReply{LookupReply: rep}})
}

// onRemove handles a master giving a resource up. One sent under an older
// recovery is already out of the directory that recovery rebuilt.
func (n *Node) onRemove(from uint32, rm *dlmpeerv1.Remove) {
	id := directory.ID{Epoch: rm.GetEpoch(), Round: rm.GetRound()}
	switch {
	case n.rec != nil && id == n.rec.id:
		n.deferred = append(n.deferred, func() { n.onRemove(from, rm) })
	case n.rec == nil && n.haveLast && id == n.last.ID:
		n.dirTable.Remove(directory.Key{Lockspace: rm.GetLockspace(), Resource: string(rm.GetResource())}, from, rm.GetToken())
	}
}

// toss gives up the resources this node masters that have had no lock
// for Config.Toss, and forgets the masters it has not used for as long:
// it looks at the items due (at most tossBatch) and puts back those still
// in use.
func (n *Node) toss(now time.Time) {
	for i := 0; i < tossBatch && n.tossHead < len(n.tossQ); i++ {
		it := n.tossQ[n.tossHead]
		if now.Before(it.due) {
			break
		}
		n.tossQ[n.tossHead] = tossItem{}
		n.tossHead++
		n.tossOne(it, now)
	}
	if n.tossHead > 1024 && 2*n.tossHead > len(n.tossQ) {
		n.tossQ = append([]tossItem(nil), n.tossQ[n.tossHead:]...)
		n.tossHead = 0
	}
}

func (n *Node) tossOne(it tossItem, now time.Time) {
	again := func(due time.Time) {
		it.due = due
		n.tossQ = append(n.tossQ, it)
	}
	if it.r != nil {
		switch {
		case n.routes[it.k] != it.r:
		case now.Before(it.r.used.Add(n.cfg.Toss)):
			again(it.r.used.Add(n.cfg.Toss))
		default:
			delete(n.routes, it.k)
		}
		return
	}
	if n.mastered[it.k] != it.m {
		return
	}
	if t := n.tables[it.k.Lockspace]; t != nil {
		if _, _, held := t.LVB(it.k.Resource); held {
			again(now.Add(n.cfg.Toss))
			return
		}
	}
	if now.Before(it.m.used.Add(n.cfg.Toss)) {
		again(it.m.used.Add(n.cfg.Toss))
		return
	}
	delete(n.mastered, it.k)
	last := it.m.floor
	if t := n.tables[it.k.Lockspace]; t != nil {
		last = max(last, t.ForgetToken(it.k.Resource))
	}
	if d := directory.Master(n.dir, it.k.Lockspace, it.k.Resource); d == n.self {
		n.dirTable.Remove(it.k, n.self, last)
	} else {
		id := n.installedID()
		n.toMaster(d, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Remove{Remove: &dlmpeerv1.Remove{
			Epoch: id.Epoch, Round: id.Round, Lockspace: it.k.Lockspace, Resource: []byte(it.k.Resource), Token: last}}})
	}
}

// flushRetries sends, in order, the requests and lookups that wait for the
// next tick.
func (n *Node) flushRetries() {
	retries := n.retries
	n.retries = nil
	for _, p := range retries {
		n.submit(p)
	}
	var due []*lookup
	for _, l := range n.lookups {
		if !l.sent {
			due = append(due, l)
		}
	}
	sortLookups(due)
	for _, l := range due {
		if n.lookups[l.key] == l && !l.sent {
			n.sendLookup(l)
		}
	}
}
