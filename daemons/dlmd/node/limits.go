package node

import (
	"errors"
	"fmt"
)

// Limits bound what the clients of this node may make it hold: locks (with
// requests not yet answered by a master, and orphans for the uid) and
// requests not yet answered. Zero means no limit. Root is subject to them
// too: they guard the daemon's memory, not an access right.
type Limits struct {
	// LocksPerSession bounds the locks one session holds or asks for.
	LocksPerSession int
	// LocksPerUID bounds the locks the sessions of one uid on this node
	// hold or ask for, its orphans included.
	LocksPerUID int
	// PendingPerSession bounds a session's requests that wait for their
	// answer (a master far away, a recovery, a lookup).
	PendingPerSession int
	// PendingPerUID bounds the requests of the sessions of one uid on
	// this node that wait for their answer.
	PendingPerUID int
}

// ErrLimit is the error of a request refused because a limit was
// reached (STATUS_LIMIT).
var ErrLimit = errors.New("limit reached")

// limitErr checks the limits of a new request of session ss; lock: it
// asks for a new lock.
func (n *Node) limitErr(ss *session, lock bool) error {
	l := n.cfg.Limits
	if l.PendingPerSession > 0 && ss.pending >= l.PendingPerSession {
		return fmt.Errorf("dlm: too many requests waiting: session has %d (dlmd.max_pending_per_session): %w", ss.pending, ErrLimit)
	}
	if u := n.uidPending[ss.cred.UID]; l.PendingPerUID > 0 && u >= l.PendingPerUID {
		return fmt.Errorf("dlm: too many requests waiting: uid %d has %d on this node (dlmd.max_pending_per_uid): %w", ss.cred.UID, u, ErrLimit)
	}
	if !lock {
		return nil
	}
	if l.LocksPerSession > 0 && ss.nlocks >= l.LocksPerSession {
		return fmt.Errorf("dlm: too many locks: session holds %d (dlmd.max_locks_per_session): %w", ss.nlocks, ErrLimit)
	}
	if u := n.uidLocks[ss.cred.UID]; l.LocksPerUID > 0 && u >= l.LocksPerUID {
		return fmt.Errorf("dlm: too many locks: uid %d holds %d on this node (dlmd.max_locks_per_uid): %w", ss.cred.UID, u, ErrLimit)
	}
	return nil
}

// addLock files a new copy of a lock, counted for its owner session and
// uid.
func (n *Node) addLock(cl *copyLock) {
	n.locks[cl.key.ID] = cl
	if cl.owner != nil {
		cl.owner.nlocks++
	}
	n.uidLocks[cl.uid]++
}

// dropLock forgets the copy of a lock.
func (n *Node) dropLock(cl *copyLock) {
	if n.locks[cl.key.ID] != cl {
		return
	}
	delete(n.locks, cl.key.ID)
	if cl.owner != nil {
		cl.owner.nlocks--
	}
	if n.uidLocks[cl.uid]--; n.uidLocks[cl.uid] <= 0 {
		delete(n.uidLocks, cl.uid)
	}
}

// countPending counts a new request of session ss until it is answered.
func (n *Node) countPending(ss *session) {
	ss.pending++
	if !ss.uncounted {
		n.uidPending[ss.cred.UID]++
	}
}

// answered notes that a session's request got its answer (or was dropped).
func (n *Node) answered(p *pending) {
	if !p.counted {
		return
	}
	p.counted = false
	ss := p.sess
	ss.pending--
	if !ss.uncounted {
		n.uncountUID(ss.cred.UID, 1)
	}
}

// uncountSession takes a session that ends out of its uid's count of
// requests pending: what it still waits for may never be answered.
func (n *Node) uncountSession(ss *session) {
	if !ss.uncounted {
		ss.uncounted = true
		n.uncountUID(ss.cred.UID, ss.pending)
	}
}

func (n *Node) uncountUID(uid uint32, k int) {
	if n.uidPending[uid] -= k; n.uidPending[uid] <= 0 {
		delete(n.uidPending, uid)
	}
}

// checkCounts verifies the counts of locks by session and uid.
func (n *Node) checkCounts() error {
	bySess := map[*session]int{}
	byUID := map[uint32]int{}
	pendByUID := map[uint32]int{}
	for _, ss := range n.sessions {
		if !ss.uncounted {
			pendByUID[ss.cred.UID] += ss.pending
		}
	}
	for uid, c := range pendByUID {
		if c != n.uidPending[uid] {
			return fmt.Errorf("uid %d counts %d requests pending, its sessions %d", uid, n.uidPending[uid], c)
		}
	}
	for _, cl := range n.locks {
		if cl.owner != nil {
			bySess[cl.owner]++
		}
		byUID[cl.uid]++
	}
	for _, ss := range n.sessions {
		if ss.pending < 0 {
			return fmt.Errorf("session %d counts %d requests pending", ss.id, ss.pending)
		}
		if !ss.closed && ss.nlocks != bySess[ss] {
			return fmt.Errorf("session %d counts %d locks, holds %d", ss.id, ss.nlocks, bySess[ss])
		}
	}
	for uid, c := range n.uidLocks {
		if c != byUID[uid] {
			return fmt.Errorf("uid %d counts %d locks, holds %d", uid, c, byUID[uid])
		}
	}
	if len(n.uidLocks) != len(byUID) {
		return fmt.Errorf("uid counts %v, locks by uid %v", n.uidLocks, byUID)
	}
	return nil
}
