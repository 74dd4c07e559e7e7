package node

import (
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// The lease: a node whose locks the others may have given away must know
// it before they do, or two clients would hold incompatible locks (a node
// cut off by a partition keeps running). So:
//
//   - every dlmd pings each member's dlmd every Lease/10 on its link, and
//     a dlmd answers (pongs) only the nodes UP in its membership;
//   - a node holds its lease while pongs sent in the last Lease reach it
//     from a majority of the members (itself included); the first tick
//     without it, it fences: it drops every lock and copy, tells its
//     clients their locks are lost (their sessions end with ErrLost),
//     and comes back as a new dlmd incarnation that starts empty;
//   - the survivors of a recovery that loses a node stop answering its
//     pings before their markers, report in them when they last did, and
//     grant nothing before the lost node's lease has surely ended: its
//     last pong, plus Lease, plus a margin.
//
// A node that crashed or was cut off is declared DOWN by clmsd some time
// after the partition (0.4 s at best); pings stopped then, so the wait is
// usually over, or short, by the time recovery needs it.
//
// The lease is the cluster's, not each node's: every hello, ping and pong
// carries the sender's own setting (dlmd.lease) and the lease it fences
// by, and each node fences by the largest setting among itself and the
// members it has heard from ("the lease in use"). The survivors of a
// recovery wait for the largest of their lease in use and what they heard
// the lost node set or use (also passed on in the markers' pong ages), so
// a node with a longer setting than the others is never granted over. A
// node whose setting differs from the cluster's warns once per change and
// follows the cluster's. Values from peers are capped at MaxLease.

// MaxLease is the longest lease a node takes from a peer (dlmdspec
// refuses a longer dlmd.lease).
const MaxLease = 60 * time.Second

// peerLease is what a node said of its lease.
type peerLease struct {
	setting, inUse time.Duration
}

// pingEvery is how often a node pings each member's dlmd.
func pingEvery(lease time.Duration) time.Duration {
	return max(lease/10, 10*time.Millisecond)
}

// PingEvery is how often the shell pings each member's dlmd: by this
// node's own setting, which is never longer than the lease in use.
func (n *Node) PingEvery() time.Duration { return pingEvery(n.cfg.Lease) }

// Lease reports this node's own lease setting and the lease it fences by,
// for the shell to send in its hellos, pings and pongs.
func (n *Node) Lease() (setting, inUse time.Duration) { return n.cfg.Lease, n.lease() }

// HeardLease notes what node said of its lease (in a hello, ping or
// pong); zero values are unknown and ignored.
func (n *Node) HeardLease(node uint32, setting, inUse time.Duration) {
	if node == n.self {
		return
	}
	setting, inUse = min(max(setting, 0), MaxLease), min(max(inUse, 0), MaxLease)
	if setting == 0 && inUse == 0 {
		return
	}
	n.heard[node] = peerLease{setting: setting, inUse: inUse}
	n.noteLease()
}

// lease is the lease in use: the largest setting of this node and of
// the members it has heard from.
func (n *Node) lease() time.Duration {
	l := n.cfg.Lease
	for _, m := range n.memberList() {
		l = max(l, n.heard[m].setting)
	}
	return l
}

// lostLease is how long a lost node's lease can last: the longest of this
// node's lease in use, and what it heard (or was told) the lost node set
// or used.
func (n *Node) lostLease(lost uint32) time.Duration {
	h := n.heard[lost]
	l := max(n.lease(), h.setting, h.inUse)
	if n.rec != nil {
		l = max(l, n.rec.lostLease[lost])
	}
	return l
}

// noteLease warns, once per change, when the cluster's lease is not this
// node's setting.
func (n *Node) noteLease() {
	l := n.lease()
	if l == n.inUse {
		return
	}
	n.inUse = l
	f := logrus.Fields{"setting": n.cfg.Lease.String(), "cluster": l.String()}
	if l != n.cfg.Lease {
		n.log.WithFields(f).Warn("dlmd.lease differs from the cluster's (the largest of the members'): this node follows the cluster's")
	} else {
		n.log.WithFields(f).Info("dlmd.lease is the cluster's again")
	}
}

// leaseMargin covers the lost node's tick (it fences at its first tick
// past the lease) and clock rate differences.
func leaseMargin(lease, tick time.Duration) time.Duration { return lease/10 + 2*tick }

// Pinged handles node's ping at now: it reports whether to answer it
// (only the members are answered), noting when.
func (n *Node) Pinged(now time.Time, node uint32) bool {
	if !n.pongable[node] {
		return false
	}
	n.ponged[node] = now
	return true
}

// Ponged handles the answer, on link, to the ping sent at sent (by the
// shell's clock, as now): the master was in contact then.
func (n *Node) Ponged(link Link, sent time.Time) {
	if o := n.outs[link.Node]; o != nil && link.Out && o.id == link.ID && link.Inc == n.cfg.Incarnation && sent.After(o.contact) {
		o.contact = sent
		delete(n.rejoining, link.Node) // counted again from now on
	}
}

// setPongable makes the members the nodes whose pings are answered.
func (n *Node) setPongable(members []uint32) {
	n.pongable = map[uint32]bool{}
	for _, m := range members {
		n.pongable[m] = true
	}
}

// pongAges reports, for the nodes this node no longer answers, how long
// ago it last did.
func (n *Node) pongAges() []*dlmpeerv1.PongAge {
	var out []*dlmpeerv1.PongAge
	for _, m := range sortedNodes(n.ponged) {
		if !n.pongable[m] {
			h := n.heard[m]
			out = append(out, &dlmpeerv1.PongAge{Node: m, AgeNanos: int64(n.now.Sub(n.ponged[m])), LeaseNanos: int64(max(h.setting, h.inUse))})
		}
	}
	return out
}

// notePongAges records, from a member's marker or acknowledgement, the
// latest time it can have answered each lost node.
func (n *Node) notePongAges(ages []*dlmpeerv1.PongAge) {
	if n.rec == nil {
		return
	}
	for _, a := range ages {
		t := n.now.Add(-time.Duration(a.GetAgeNanos()))
		if t.After(n.rec.lastPong[a.GetNode()]) {
			n.rec.lastPong[a.GetNode()] = t
		}
		if l := min(time.Duration(a.GetLeaseNanos()), MaxLease); l > n.rec.lostLease[a.GetNode()] {
			n.rec.lostLease[a.GetNode()] = l
		}
	}
}

// leaseWait is how long the recovery must still wait before granting
// what the lost nodes held: until their leases have surely ended. A node
// that said goodbye dropped its locks as it left: nothing to wait for.
func (n *Node) leaseWait(plan directory.Plan) time.Duration {
	var until time.Time
	for _, lost := range plan.Lost {
		if slices.Contains(plan.New, lost) {
			continue // a new dlmd there: the old one and its clients are gone
		}
		if _, gone := n.gone[lost]; gone {
			continue
		}
		l := n.lostLease(lost)
		for _, t := range []time.Time{n.rec.lastPong[lost], n.ponged[lost]} {
			if !t.IsZero() {
				if end := t.Add(l + leaseMargin(l, n.cfg.Tick)); end.After(until) {
					until = end
				}
			}
		}
	}
	if until.IsZero() {
		return 0
	}
	return until.Sub(n.now)
}

// leaseHeld reports whether pongs from a majority of the members (this
// node included; not those that said goodbye) came within the lease.
func (n *Node) leaseHeld() bool {
	members := slices.DeleteFunc(n.memberList(), func(m uint32) bool { return n.rejoining[m] })
	if len(members) == 0 {
		return false
	}
	have, lease := 0, n.lease()
	for _, m := range members {
		if m == n.self {
			have++
			continue
		}
		if o := n.outs[m]; o != nil && !o.contact.IsZero() && n.now.Sub(o.contact) < lease {
			have++
		}
	}
	return have > len(members)/2
}

// checkLease fences the node when it holds locks of an installed
// directory without its lease.
func (n *Node) checkLease() {
	if n.haveLast && !n.leaseHeld() {
		n.fence("no contact with a majority of the members' dlmd within the lease")
	}
}

// fence drops everything this node holds, tells its clients, and starts
// over as a new dlmd incarnation.
func (n *Node) fence(why string) {
	n.log.WithFields(logrus.Fields{"reason": why, "sessions": len(n.sessions), "locks": len(n.locks)}).
		Error("fenced: this node's locks are dropped and its clients told; rejoining as a new dlmd")
	for _, id := range sortedNodes64(n.sessions) {
		n.sessions[id].closed, n.sessions[id].uncounted = true, true
		n.rd.Ended = append(n.rd.Ended, Ended{Session: id, Lost: true})
		delete(n.sessions, id)
	}
	n.closeLinks()
	n.tables = map[string]*lockspace.Lockspace{}
	n.locks, n.uidLocks, n.uidPending = map[lockspace.LockID]*copyLock{}, map[uint32]int{}, map[uint32]int{}
	n.pend = map[uint64]*pending{}
	n.pids = map[lockspace.Owner]int32{}
	n.outbox, n.deferred, n.early, n.retries = nil, nil, nil, nil
	n.routes, n.lookups, n.lookupTags = map[directory.Key]*route{}, map[directory.Key]*lookup{}, map[uint64]*lookup{}
	n.mastered, n.dirTable = map[directory.Key]*mastery{}, directory.NewTable()
	n.tossQ, n.tossHead = nil, 0
	n.dir, n.last, n.haveLast = nil, directory.Completed{}, false
	n.rec = nil
	inc := uint64(n.now.UnixNano())
	if inc <= n.cfg.Incarnation {
		inc = n.cfg.Incarnation + 1
	}
	n.cfg.Incarnation = inc
	n.startRecovery(directory.ID{Epoch: n.members.Epoch})
}

func sortedNodes64[V any](m map[uint64]V) []uint64 {
	out := make([]uint64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
