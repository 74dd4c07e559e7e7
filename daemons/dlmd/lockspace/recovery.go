package lockspace

import (
	"fmt"
	"slices"
	"time"
)

// LockState is where a lock sits on its resource's queues.
type LockState uint8

// The lock states.
const (
	// StateGranted: on the granted queue, holding Granted.
	StateGranted LockState = iota + 1
	// StateConverting: holding Granted, waiting for Requested on the
	// conversion queue.
	StateConverting
	// StateWaiting: a new request for Requested on the wait queue.
	StateWaiting
)

var stateNames = [...]string{StateGranted: "granted", StateConverting: "converting", StateWaiting: "waiting"}

// String returns granted, converting or waiting.
func (s LockState) String() string {
	if s >= StateGranted && s <= StateWaiting {
		return stateNames[s]
	}
	return fmt.Sprintf("LockState(%d)", int(s))
}

// LockInfo is a copy of one lock: what a master dumps and what Rebuild
// takes. The LVB fields are the value block as this lock last saw it.
type LockInfo struct {
	Resource   string
	Key        Key
	State      LockState
	Granted    Mode // when StateGranted or StateConverting
	Requested  Mode // when StateConverting or StateWaiting
	Flags      Flags
	Persistent bool
	Orphan     bool
	Seq        uint64
	Deadline   time.Time // of the pending request; zero: none
	HasLVB     bool
	LVB        LVB
	LVBValid   bool
	LVBSeq     uint64
	// Token is the fencing token of the lock's grant in PW or EX (0
	// otherwise).
	Token uint64
}

func (l *lock) info() LockInfo {
	return LockInfo{
		Resource: l.res.name, Key: l.key, State: LockState(l.state), Granted: l.gr, Requested: l.rq,
		Flags: l.flags, Persistent: l.persistent, Orphan: l.orphan, Seq: l.seq, Deadline: l.deadline,
		HasLVB: l.hasLVB, LVB: l.lvb, LVBValid: l.lvbValid, LVBSeq: l.lvbSeq, Token: l.token,
	}
}

// Dump returns the locks on a resource in queue order: granted, then
// converting, then waiting.
func (ls *Lockspace) Dump(resource string) []LockInfo {
	res := ls.res[resource]
	if res == nil {
		return nil
	}
	var out []LockInfo
	for _, q := range [][]*lock{res.granted, res.converting, res.waiting} {
		for _, l := range q {
			out = append(out, l.info())
		}
	}
	return out
}

// NodeLocks returns the locks that owners on node have here, by resource
// and then queue order: the copies that node would hand a new master.
func (ls *Lockspace) NodeLocks(node NodeID) []LockInfo {
	var out []LockInfo
	for _, name := range ls.Resources() {
		for _, li := range ls.Dump(name) {
			if li.Key.Owner.Node == node {
				out = append(out, li)
			}
		}
	}
	return out
}

// Rebuild recreates a resource on a new master from the copies of the
// surviving nodes' locks (those of dead nodes are simply absent). Granted
// locks keep their modes; conversions and new requests are queued in order
// of their old sequence numbers; then whatever the missing locks blocked is
// granted. Two incompatible granted modes among the copies is
// ErrIncompatibleCopies. The value block is taken from the copy with the
// newest value among locks granted in PR, PW or EX (no writer can have
// changed it since they were granted); if no such copy has one, it is
// marked not valid, since a lost holder may have written it. Blocking ASTs
// are sent afresh: a holder may see one again. Each copy keeps its
// fencing token, and the resource's counter continues above the highest
// of them and above the floor set with RaiseToken before: the shell sets
// that floor above every token the lost master can have granted.
func (ls *Lockspace) Rebuild(name string, copies []LockInfo) ([]Effect, error) {
	if err := checkResourceName(name); err != nil {
		return nil, err
	}
	if ls.res[name] != nil {
		return nil, fmt.Errorf("dlm: rebuild %q: resource has locks here: %w", name, ErrExists)
	}
	seen := map[Key]bool{}
	for i, c := range copies {
		bad := ""
		switch {
		case c.Resource != name:
			bad = fmt.Sprintf("resource %q", c.Resource)
		case seen[c.Key] || ls.locks[c.Key] != nil:
			return nil, fmt.Errorf("dlm: rebuild %q: lock %v: %w", name, c.Key, ErrExists)
		case c.State == StateGranted && !c.Granted.Valid(),
			c.State == StateConverting && (!c.Granted.Valid() || !c.Requested.Valid()),
			c.State == StateWaiting && !c.Requested.Valid():
			bad = fmt.Sprintf("modes %v/%v", c.Granted, c.Requested)
		case c.State < StateGranted || c.State > StateWaiting:
			bad = c.State.String()
		case c.Orphan && (c.State != StateGranted || !c.Persistent):
			bad = "orphan not granted or not persistent"
		}
		if bad != "" {
			return nil, fmt.Errorf("dlm: rebuild %q: copy %d (%v): %s: %w", name, i, c.Key, bad, ErrInvalid)
		}
		seen[c.Key] = true
		for _, d := range copies[:i] {
			if c.State != StateWaiting && d.State != StateWaiting && !Compatible(c.Granted, d.Granted) {
				return nil, fmt.Errorf("dlm: rebuild %q: %v holds %v, %v holds %v: %w",
					name, d.Key, d.Granted, c.Key, c.Granted, ErrIncompatibleCopies)
			}
		}
	}
	sorted := slices.Clone(copies)
	slices.SortStableFunc(sorted, func(a, b LockInfo) int {
		switch {
		case a.Seq != b.Seq:
			if a.Seq < b.Seq {
				return -1
			}
			return 1
		case a.Key.Less(b.Key):
			return -1
		case b.Key.Less(a.Key):
			return 1
		}
		return 0
	})
	res := &resource{name: name}
	var best *LockInfo
	for i := range sorted {
		c := &sorted[i]
		if c.State != StateWaiting && (c.Granted == PR || c.Granted == PW || c.Granted == EX) && c.HasLVB &&
			(best == nil || c.LVBSeq > best.LVBSeq) {
			best = c
		}
		res.lvbSeq = max(res.lvbSeq, c.LVBSeq)
	}
	if best != nil {
		res.lvb, res.lvbValid = best.LVB, best.LVBValid
	}
	ls.res[name] = res
	for _, c := range sorted {
		l := &lock{key: c.Key, res: res, state: state(c.State), flags: c.Flags, persistent: c.Persistent,
			orphan: c.Orphan, seq: c.Seq, lvb: c.LVB, hasLVB: c.HasLVB, lvbValid: c.LVBValid, lvbSeq: c.LVBSeq}
		if c.State != StateWaiting {
			l.gr = c.Granted
		}
		if c.State != StateGranted {
			l.rq = c.Requested
			if !c.Deadline.IsZero() {
				l.deadline = c.Deadline
				ls.timed[l.key] = l
			}
		}
		q := res.queue(l.state)
		*q = append(*q, l)
		ls.locks[l.key] = l
		om := ls.owners[l.key.Owner]
		if om == nil {
			om = map[LockID]*lock{}
			ls.owners[l.key.Owner] = om
		}
		om[l.key.ID] = l
		ls.seq = max(ls.seq, c.Seq)
		if l.holds() && (l.gr == PW || l.gr == EX) {
			l.token = c.Token
			ls.RaiseToken(name, c.Token)
		}
	}
	return ls.process(res), nil
}
