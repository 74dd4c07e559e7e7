package server

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

// mono is this process's monotonic clock, in nanoseconds.
func (s *Server) mono() int64 { return int64(time.Since(s.base)) }

func (s *Server) pingEvery() time.Duration {
	return max(s.cfg.Lease/10, 10*time.Millisecond)
}

// leaseMargin covers the lost node's tick (it fences at its first tick
// past the lease) and clock rate differences.
func (s *Server) leaseMargin() time.Duration { return s.cfg.Lease/10 + 2*tick }

// pong reports whether to answer node's ping, noting when.
func (s *Server) pong(node uint32) bool {
	s.pongMu.Lock()
	defer s.pongMu.Unlock()
	if !s.pongable[node] {
		return false
	}
	s.ponged[node] = time.Now()
	return true
}

// setPongable makes the members the nodes whose pings are answered.
func (s *Server) setPongable(members []uint32) {
	s.pongMu.Lock()
	defer s.pongMu.Unlock()
	s.pongable = map[uint32]bool{}
	for _, n := range members {
		s.pongable[n] = true
	}
}

// pongAges reports, for the nodes this node no longer answers, how long
// ago it last did.
func (s *Server) pongAges() []*dlmpeerv1.PongAge {
	s.pongMu.Lock()
	defer s.pongMu.Unlock()
	var out []*dlmpeerv1.PongAge
	for n, t := range s.ponged {
		if !s.pongable[n] {
			out = append(out, &dlmpeerv1.PongAge{Node: n, AgeNanos: int64(time.Since(t))})
		}
	}
	slices.SortFunc(out, func(a, b *dlmpeerv1.PongAge) int { return int(a.Node) - int(b.Node) })
	return out
}

// notePongAges records, from a member's marker or acknowledgement, the
// latest time it can have answered each lost node.
func (s *Server) notePongAges(ages []*dlmpeerv1.PongAge) {
	if s.rec == nil {
		return
	}
	now := time.Now()
	for _, a := range ages {
		t := now.Add(-time.Duration(a.GetAgeNanos()))
		if t.After(s.rec.lastPong[a.GetNode()]) {
			s.rec.lastPong[a.GetNode()] = t
		}
	}
}

// leaseWait is how long the recovery must still wait before granting
// what the lost nodes held: until their leases have surely ended.
func (s *Server) leaseWait(plan directory.Plan) time.Duration {
	var until time.Time
	s.pongMu.Lock()
	for _, n := range plan.Lost {
		if slices.Contains(plan.New, n) {
			continue // a new dlmd there: the old one and its clients are gone
		}
		for _, t := range []time.Time{s.rec.lastPong[n], s.ponged[n]} {
			if !t.IsZero() {
				if end := t.Add(s.cfg.Lease + s.leaseMargin()); end.After(until) {
					until = end
				}
			}
		}
	}
	s.pongMu.Unlock()
	return time.Until(until)
}

// leaseHeld reports whether pongs from a majority of the members (this
// node included) came within the lease.
func (s *Server) leaseHeld() bool {
	members := s.members.List()
	if len(members) == 0 {
		return false
	}
	have := 0
	now := s.mono()
	for _, n := range members {
		if n == s.self {
			have++
			continue
		}
		if p := s.peersOut[n]; p != nil && now-p.contact.Load() < int64(s.cfg.Lease) && p.contact.Load() != 0 {
			have++
		}
	}
	return have > len(members)/2
}

// checkLease fences the node when it holds locks of an installed
// directory without its lease.
func (s *Server) checkLease() {
	if s.haveLast && !s.leaseHeld() {
		s.fence("no contact with a majority of the members' dlmd within the lease")
	}
}

// fence drops everything this node holds, tells its clients, and starts
// over as a new dlmd incarnation.
func (s *Server) fence(why string) {
	s.log.WithFields(logrus.Fields{"reason": why, "sessions": len(s.sessions), "locks": len(s.locks)}).
		Error("fenced: this node's locks are dropped and its clients told; rejoining as a new dlmd")
	for id, ss := range s.sessions {
		ss.lost.Store(true)
		ss.closed = true
		ss.q.close()
		delete(s.sessions, id)
	}
	s.closePeers()
	s.tables = map[string]*lockspace.Lockspace{}
	s.locks = map[lockspace.LockID]*copyLock{}
	s.pend = map[uint64]*pending{}
	s.pids = map[lockspace.Owner]int32{}
	s.outbox, s.deferred, s.early, s.retries = nil, nil, nil, nil
	s.routes, s.lookups, s.lookupTags = map[directory.Key]*route{}, map[directory.Key]*lookup{}, map[uint64]*lookup{}
	s.mastered, s.dirTable = map[directory.Key]*mastery{}, directory.NewTable()
	s.tossQ, s.tossHead = nil, 0
	s.dir, s.last, s.haveLast = nil, directory.Completed{}, false
	s.rec = nil
	inc := uint64(time.Now().UnixNano())
	if inc <= s.cfg.Incarnation {
		inc = s.cfg.Incarnation + 1
	}
	s.cfg.Incarnation = inc
	s.startRecovery(directory.ID{Epoch: s.members.Epoch})
}
