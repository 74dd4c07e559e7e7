package coherence

import (
	"errors"
	"fmt"
)

// Inode is one inode's coherence on one node: the lock it holds, what the
// kernel caches of it, the local operations running and waiting, and a
// callback to serve. Each method returns the actions for the shell, in
// order; the shell reports back with Granted, Refused, Cancelled and
// WrittenBack. Not safe for concurrent use.
//
// Its invariant, which every method keeps: the cache is within
// Allowed(the mode held), so dirty data exists only under PW or EX.
type Inode struct {
	held  Mode // granted (0: none)
	asked Mode // requested and not granted yet (0: none)
	cache Cache
	// running are the operations let go and not ended, by id: true for
	// those that were running when the lock was lost (orphans).
	running map[uint64]bool
	// queue are the operations waiting, in arrival order.
	queue []queued
	// blocked is the mode another node waits for (0: none): a callback
	// to serve once nothing runs.
	blocked Mode
	// writing: the WriteBack numbered wb was asked for and its
	// WrittenBack has not come; cancelling: a Cancel of the request was
	// asked for.
	writing, cancelling bool
	wb                  uint64
}

type queued struct {
	op uint64
	a  Access
}

// Held is the mode held (0: none) and Cache what the kernel may hold.
func (i *Inode) Held() Mode   { return i.held }
func (i *Inode) Cache() Cache { return i.cache }

// Errors of the shell's reports.
var (
	ErrUnknownOp    = errors.New("coherence: no such operation running")
	ErrNotAllowed   = errors.New("coherence: the lock held does not allow that cache")
	ErrNotRequested = errors.New("coherence: no request outstanding")
)

// Begin is local operation op wanting access a: it runs at once when the
// lock held allows it and nothing waits before it (no callback, no
// earlier operation); otherwise it waits, and the lock is asked for.
func (i *Inode) Begin(op uint64, a Access) []Action {
	i.queue = append(i.queue, queued{op, a})
	return i.pump(nil)
}

// End is operation op ending; add is what it left in the kernel's cache
// (a read's attributes and pages, a write's dirty pages). An operation
// that was running when the lock was lost (Lost) adds nothing.
func (i *Inode) End(op uint64, add Cache) ([]Action, error) {
	orphan, ok := i.running[op]
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrUnknownOp, op)
	}
	delete(i.running, op)
	if orphan {
		return i.pump(nil), nil
	}
	var err error
	if add&^Allowed(i.held) != 0 {
		err = fmt.Errorf("%w: %v under %v", ErrNotAllowed, add, i.held)
		add &= Allowed(i.held)
	}
	i.cache |= add
	return i.pump(nil), err
}

// Synced is a write back the shell made on its own (fsync, close): the
// dirty data is on the server and now clean.
func (i *Inode) Synced() {
	if i.cache&Dirty != 0 {
		i.cache = i.cache&^Dirty | Clean
	}
}

// Granted is the lock granted in mode m (the answer to Request).
func (i *Inode) Granted(m Mode) ([]Action, error) {
	if i.asked == 0 {
		return nil, ErrNotRequested
	}
	if !m.Covers(i.asked) {
		return nil, fmt.Errorf("coherence: granted %v for a request of %v", m, i.asked)
	}
	// The mode asked or better: the cache kept from before stays within
	// what it allows, since it was within the weaker mode's.
	i.asked, i.held, i.cancelling = 0, m, false
	return i.pump(nil), nil
}

// Cancelled is the request cancelled (the answer to Cancel), and Refused
// the request refused (dlmd found a conversion deadlock, or it timed
// out): either way the lock is still held in the mode it had. The
// operations waiting ask again, once a callback waiting is served.
func (i *Inode) Cancelled() ([]Action, error) { return i.notGranted() }

// Refused: see Cancelled.
func (i *Inode) Refused() ([]Action, error) { return i.notGranted() }

func (i *Inode) notGranted() ([]Action, error) {
	if i.asked == 0 {
		return nil, ErrNotRequested
	}
	i.asked, i.cancelling = 0, false
	return i.pump(nil), nil
}

// Blocking is another node waiting for mode want, which the lock held
// blocks: the lock is released as far as want needs (OnBlocking) once the
// operations running end; operations that come meanwhile wait.
func (i *Inode) Blocking(want Mode) []Action {
	if !want.Valid() {
		return nil
	}
	to := OnBlocking(i.held, i.cache, want).To
	if to == i.held {
		return nil
	}
	if i.blocked == 0 || to == NL {
		i.blocked = want // NL covers a callback for less as well
	}
	return i.pump(nil)
}

// WrittenBack is write back n (the WriteBack action's Op) done: the dirty
// data is on the server. The answer to a write back asked for before the
// lock was lost, or before a later one, is ignored.
func (i *Inode) WrittenBack(n uint64) []Action {
	if !i.writing || n != i.wb {
		return nil
	}
	i.writing = false
	i.Synced()
	return i.pump(nil)
}

// Lost is the lock lost (dlmd dropped this node's lock: the node was cut
// off and the lockspace recovered without it): everything cached is
// dropped, and dirty is whether data written here never reached the
// server (another node may have changed the inode since: it cannot be
// written back). Waiting operations ask for the lock again; those running
// go on without it, so the shell fails them (EIO) and refuses what they
// would still write, and their End adds nothing.
func (i *Inode) Lost() (acts []Action, dirty bool) {
	dirty = i.cache&Dirty != 0
	if i.cache != 0 {
		acts = append(acts, Action{Kind: Invalidate, Cache: i.cache})
	}
	for op := range i.running {
		i.running[op] = true
	}
	i.held, i.asked, i.cache, i.blocked, i.writing, i.cancelling = 0, 0, 0, 0, false, false
	return i.pump(acts), dirty
}

// pump does what the state allows now, appending to acts.
func (i *Inode) pump(acts []Action) []Action {
	if i.blocked != 0 {
		if i.unorphaned() > 0 || i.writing || i.cancelling {
			return acts
		}
		if i.asked != 0 {
			// A conversion up waits behind the other node, which
			// waits for this lock: give the request up first.
			i.cancelling = true
			return append(acts, Action{Kind: Cancel})
		}
		r := OnBlocking(i.held, i.cache, i.blocked)
		if r.WriteBack && i.cache&Dirty != 0 {
			i.writing = true
			i.wb++
			return append(acts, Action{Kind: WriteBack, Op: i.wb})
		}
		if r.Invalidate != 0 {
			acts = append(acts, Action{Kind: Invalidate, Cache: r.Invalidate})
			i.cache &^= r.Invalidate
		}
		if r.To != i.held {
			acts = append(acts, Action{Kind: Convert, Mode: r.To})
			i.held = r.To
		}
		i.blocked = 0
	}
	for len(i.queue) > 0 && i.held.Valid() && i.held.Covers(Needs(i.queue[0].a)) {
		q := i.queue[0]
		i.queue = i.queue[1:]
		if i.running == nil {
			i.running = map[uint64]bool{}
		}
		i.running[q.op] = false
		acts = append(acts, Action{Kind: Run, Op: q.op})
	}
	if len(i.queue) > 0 && i.asked == 0 {
		want := PR
		for _, q := range i.queue {
			if Needs(q.a) == EX {
				want = EX
			}
		}
		i.asked = want
		acts = append(acts, Action{Kind: Request, Mode: want})
	}
	return acts
}

// unorphaned counts the operations running under the lock held.
func (i *Inode) unorphaned() int {
	n := 0
	for _, orphan := range i.running {
		if !orphan {
			n++
		}
	}
	return n
}
