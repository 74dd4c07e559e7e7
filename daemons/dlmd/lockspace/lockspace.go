package lockspace

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// state is where a lock sits on its resource.
type state uint8

const (
	granted    state = iota + 1 // on the granted queue
	converting                  // granted in gr, waiting for rq on the conversion queue
	waiting                     // a new request on the wait queue, nothing granted yet
)

type lock struct {
	key        Key
	res        *resource
	state      state
	gr, rq     Mode  // gr when granted/converting, rq when converting/waiting
	flags      Flags // of the pending (or last) request
	persistent bool
	orphan     bool
	seq        uint64    // sequence number of the pending (or last) request
	deadline   time.Time // of the pending request; zero: none
	basts      uint8     // modes announced by BAST since gr last changed
	// The value block as this lock last saw it (read on a grant or
	// written by it), kept so copies can rebuild a resource.
	lvb      LVB
	hasLVB   bool
	lvbValid bool
	lvbSeq   uint64
	// token is the fencing token of the lock's grant in PW or EX (0 when
	// it holds a weaker mode or nothing).
	token uint64
}

// holds reports whether the lock holds a granted mode.
func (l *lock) holds() bool { return l.state == granted || l.state == converting }

type resource struct {
	name                         string
	granted, converting, waiting []*lock
	lvb                          LVB
	lvbValid                     bool
	lvbSeq                       uint64 // bumped on every write
}

// holders calls f for every lock holding a granted mode, granted queue first.
func (r *resource) holders(f func(*lock)) {
	for _, l := range r.granted {
		f(l)
	}
	for _, l := range r.converting {
		f(l)
	}
}

func (r *resource) empty() bool {
	return len(r.granted)+len(r.converting)+len(r.waiting) == 0
}

// compatible reports whether mode m conflicts with no granted mode of a lock
// other than l.
func (r *resource) compatible(l *lock, m Mode) bool {
	ok := true
	r.holders(func(h *lock) {
		if h != l && !Compatible(h.gr, m) {
			ok = false
		}
	})
	return ok
}

func (r *resource) queue(s state) *[]*lock {
	switch s {
	case granted:
		return &r.granted
	case converting:
		return &r.converting
	default:
		return &r.waiting
	}
}

func (r *resource) unlink(l *lock) {
	q := r.queue(l.state)
	i := slices.Index(*q, l)
	if i < 0 {
		panic(fmt.Sprintf("dlm: lock %v not on its queue of %q", l.key, r.name))
	}
	*q = slices.Delete(*q, i, i+1)
}

func (r *resource) move(l *lock, to state) {
	r.unlink(l)
	l.state = to
	q := r.queue(to)
	*q = append(*q, l)
}

// Lockspace is the lock table of one lockspace on one master: the pure core
// of dlmd. It is not safe for concurrent use; the shell serializes calls.
// Every mutating call returns the effects the shell must carry out, in
// order.
type Lockspace struct {
	name   string
	cfg    Config
	seq    uint64
	locks  map[Key]*lock
	owners map[Owner]map[LockID]*lock
	res    map[string]*resource
	timed  map[Key]*lock // pending requests with a deadline
	// tokens is, per resource, the last fencing token granted or the
	// floor the shell set (RaiseToken); it outlives the resource's locks
	// until ForgetToken, so that a resource used again while this table
	// masters it never grants a token twice.
	tokens map[string]uint64
}

// New creates an empty lockspace. creator is who asks: only root may create
// a system lockspace, and anyone else only a lockspace owned by its own uid
// and by its gid or one of its groups.
func New(name string, cfg Config, creator Cred) (*Lockspace, error) {
	if name == "" {
		return nil, fmt.Errorf("dlm: lockspace name: %w", ErrInvalid)
	}
	if len(name) > MaxUserPrefix+MaxLockspaceName {
		return nil, fmt.Errorf("dlm: lockspace %.16q...: %w", name, ErrNameTooLong)
	}
	if creator.UID != 0 {
		if cfg.System || cfg.UID != creator.UID || !creator.inGroup(cfg.GID) {
			return nil, fmt.Errorf("dlm: create lockspace %q: %w", name, ErrAccess)
		}
	}
	return &Lockspace{
		name:   name,
		cfg:    cfg,
		locks:  map[Key]*lock{},
		owners: map[Owner]map[LockID]*lock{},
		res:    map[string]*resource{},
		timed:  map[Key]*lock{},
		tokens: map[string]uint64{},
	}, nil
}

// Name returns the lockspace name.
func (ls *Lockspace) Name() string { return ls.name }

// Config returns the lockspace's owner and flags.
func (ls *Lockspace) Config() Config { return ls.cfg }

// SetConfig replaces the lockspace's owner, group and mode (after a chmod
// or chown of its record); locks already granted stay.
func (ls *Lockspace) SetConfig(cfg Config) { ls.cfg = cfg }

// Open checks that cred may use the lockspace.
func (ls *Lockspace) Open(cred Cred) error {
	return ls.cfg.CheckAccess(ls.name, cred)
}

// Token returns the last fencing token granted on resource (or the floor
// RaiseToken set), 0 when none.
func (ls *Lockspace) Token(resource string) uint64 { return ls.tokens[resource] }

// RaiseToken makes every later fencing token of resource greater than
// floor (the shell's floor for a resource this table starts mastering; see
// Effect.Token). It never lowers the counter.
func (ls *Lockspace) RaiseToken(resource string, floor uint64) {
	if floor > ls.tokens[resource] {
		ls.tokens[resource] = floor
	}
}

// ForgetToken drops resource's token counter (the shell gives the resource
// up) and returns the last token, for whoever masters it next.
func (ls *Lockspace) ForgetToken(resource string) uint64 {
	t := ls.tokens[resource]
	delete(ls.tokens, resource)
	return t
}

// Len returns the number of locks (granted or not).
func (ls *Lockspace) Len() int { return len(ls.locks) }

// Seq returns the sequence number of the latest request.
func (ls *Lockspace) Seq() uint64 { return ls.seq }

// Resources returns the names of the resources that have locks, sorted.
func (ls *Lockspace) Resources() []string {
	names := make([]string, 0, len(ls.res))
	for n := range ls.res {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ResourcesAfter returns, sorted, the first limit names of resources (all
// with limit 0) that sort after after, without sorting them all: a page
// of a listing costs one pass over the resources.
func (ls *Lockspace) ResourcesAfter(after string, limit int) []string {
	if limit <= 0 {
		names := ls.Resources()
		i, found := slices.BinarySearch(names, after)
		if found {
			i++
		}
		return names[i:]
	}
	names := make([]string, 0, limit+1)
	for n := range ls.res {
		if n <= after || len(names) == limit && n >= names[limit-1] {
			continue
		}
		i, _ := slices.BinarySearch(names, n)
		names = slices.Insert(names, i, n)
		if len(names) > limit {
			names = names[:limit]
		}
	}
	return names
}

// LVB returns a resource's value block and whether it is valid; ok is false
// when the resource has no locks.
func (ls *Lockspace) LVB(resource string) (lvb LVB, valid, ok bool) {
	r := ls.res[resource]
	if r == nil {
		return LVB{}, false, false
	}
	return r.lvb, r.lvbValid, true
}

func checkResourceName(name string) error {
	if name == "" {
		return fmt.Errorf("dlm: empty resource name: %w", ErrInvalid)
	}
	if len(name) > MaxResourceName {
		return fmt.Errorf("dlm: resource %.16q... (%d bytes): %w", name, len(name), ErrNameTooLong)
	}
	return nil
}

func (ls *Lockspace) nextSeq() uint64 {
	ls.seq++
	return ls.seq
}

// Lock requests a new lock r.ID for r.Owner on r.Resource in r.Mode, on
// behalf of cred. A nil error means the request was accepted: the effects
// then include its Granted or Refused completion, unless it waits. A new
// request is granted at once only if no conversion or request is waiting
// and its mode is compatible with every granted lock (or Expedite with NL).
func (ls *Lockspace) Lock(now time.Time, cred Cred, r Request) ([]Effect, error) {
	if err := ls.Open(cred); err != nil {
		return nil, err
	}
	if err := checkResourceName(r.Resource); err != nil {
		return nil, err
	}
	k := Key{r.Owner, r.ID}
	switch {
	case !r.Mode.Valid():
		return nil, fmt.Errorf("dlm: lock %v %q: mode %v: %w", k, r.Resource, r.Mode, ErrInvalid)
	case r.Flags&^(NoQueue|ValBlk|Persistent|Expedite) != 0:
		return nil, fmt.Errorf("dlm: lock %v %q: flags %v: %w", k, r.Resource, r.Flags, ErrInvalid)
	case r.Flags&Expedite != 0 && r.Mode != NL:
		return nil, fmt.Errorf("dlm: lock %v %q: EXPEDITE needs mode NL: %w", k, r.Resource, ErrInvalid)
	case r.Timeout < 0:
		return nil, fmt.Errorf("dlm: lock %v %q: negative timeout: %w", k, r.Resource, ErrInvalid)
	case ls.locks[k] != nil:
		return nil, fmt.Errorf("dlm: lock %v: %w", k, ErrExists)
	}
	res := ls.res[r.Resource]
	if res == nil {
		res = &resource{name: r.Resource, lvbValid: true}
		ls.res[r.Resource] = res
	}
	l := &lock{key: k, res: res, state: waiting, rq: r.Mode, flags: r.Flags,
		persistent: r.Flags&Persistent != 0, seq: ls.nextSeq()}
	ls.locks[k] = l
	om := ls.owners[k.Owner]
	if om == nil {
		om = map[LockID]*lock{}
		ls.owners[k.Owner] = om
	}
	om[k.ID] = l
	res.waiting = append(res.waiting, l)

	var effs []Effect
	now1 := r.Flags&Expedite != 0 ||
		len(res.converting) == 0 && len(res.waiting) == 1 && res.compatible(l, r.Mode)
	switch {
	case now1:
		effs = append(effs, ls.grant(l, r.Mode, false))
	case r.Flags&NoQueue != 0:
		effs = append(effs, ls.refuse(l, ErrWouldBlock))
	default:
		ls.setDeadline(l, now, r.Timeout)
	}
	return append(effs, ls.process(res)...), nil
}

// Convert changes the mode of a granted lock. A down-conversion (to a mode
// the current one covers, or the same mode) is granted at once; with ValBlk
// from PW or EX it writes r.LVB. An up-conversion is granted at once if it
// is compatible with every other granted lock (and, with QueCvt, no other
// conversion waits); otherwise it waits on the conversion queue, which is
// served first-come first-served before any new request. A conversion that
// would wait forever behind a conversion that its own granted mode blocks
// (a conversion deadlock) is refused at once with ErrDeadlock.
func (ls *Lockspace) Convert(now time.Time, r Request) ([]Effect, error) {
	k := Key{r.Owner, r.ID}
	l := ls.locks[k]
	switch {
	case l == nil:
		return nil, fmt.Errorf("dlm: convert %v: %w", k, ErrUnknownLock)
	case r.Resource != "" && r.Resource != l.res.name:
		return nil, fmt.Errorf("dlm: convert %v: lock is on %q, not %q: %w", k, l.res.name, r.Resource, ErrInvalid)
	case !r.Mode.Valid():
		return nil, fmt.Errorf("dlm: convert %v: mode %v: %w", k, r.Mode, ErrInvalid)
	case r.Flags&^(NoQueue|ValBlk|QueCvt|InvalidateLVB) != 0:
		return nil, fmt.Errorf("dlm: convert %v: flags %v: %w", k, r.Flags, ErrInvalid)
	case r.Timeout < 0:
		return nil, fmt.Errorf("dlm: convert %v: negative timeout: %w", k, ErrInvalid)
	case l.state != granted:
		return nil, fmt.Errorf("dlm: convert %v: a request is pending: %w", k, ErrBusy)
	case l.orphan:
		return nil, fmt.Errorf("dlm: convert %v: orphaned: %w", k, ErrBusy)
	}
	res := l.res
	l.seq = ls.nextSeq()
	l.flags = r.Flags
	l.rq = r.Mode
	var effs []Effect
	if l.gr.Covers(r.Mode) {
		ls.writeLVB(l, r.Flags, r.LVB)
		effs = append(effs, ls.grant(l, r.Mode, true))
		return append(effs, ls.process(res)...), nil
	}
	res.move(l, converting)
	switch {
	case res.compatible(l, r.Mode) && (r.Flags&QueCvt == 0 || len(res.converting) == 1):
		effs = append(effs, ls.grant(l, r.Mode, false))
	case r.Flags&NoQueue != 0:
		effs = append(effs, ls.refuse(l, ErrWouldBlock))
	case conversionDeadlock(res, l):
		effs = append(effs, ls.refuse(l, ErrDeadlock))
	default:
		ls.setDeadline(l, now, r.Timeout)
	}
	return append(effs, ls.process(res)...), nil
}

// conversionDeadlock reports whether l, last on the conversion queue, waits
// for a conversion ahead of it that l's own granted mode blocks.
func conversionDeadlock(res *resource, l *lock) bool {
	for _, c := range res.converting {
		if c != l && !Compatible(l.gr, c.rq) {
			return true
		}
	}
	return false
}

// Unlock releases a lock. A request still pending on it is refused with
// ErrCancelled first. With ValBlk a lock held in PW or EX writes lvb; with
// InvalidateLVB it marks the value block not valid. Orphans may be
// unlocked too.
func (ls *Lockspace) Unlock(owner Owner, id LockID, flags Flags, lvb LVB) ([]Effect, error) {
	k := Key{owner, id}
	l := ls.locks[k]
	if l == nil {
		return nil, fmt.Errorf("dlm: unlock %v: %w", k, ErrUnknownLock)
	}
	if flags&^(ValBlk|InvalidateLVB) != 0 {
		return nil, fmt.Errorf("dlm: unlock %v: flags %v: %w", k, flags, ErrInvalid)
	}
	var effs []Effect
	if l.state != granted {
		effs = append(effs, ls.effect(l, Refused, 0, ErrCancelled))
	}
	if l.holds() {
		ls.writeLVB(l, flags, lvb)
	}
	res := l.res
	ls.remove(l)
	return append(effs, ls.process(res)...), nil
}

// Cancel withdraws the lock's pending request: a waiting conversion is
// refused with ErrCancelled and the lock stays granted in its old mode; a
// waiting new lock is refused and removed. Cancelling a lock with nothing
// pending is ErrNotPending (the grant won the race).
func (ls *Lockspace) Cancel(owner Owner, id LockID) ([]Effect, error) {
	k := Key{owner, id}
	l := ls.locks[k]
	if l == nil {
		return nil, fmt.Errorf("dlm: cancel %v: %w", k, ErrUnknownLock)
	}
	if l.state == granted {
		return nil, fmt.Errorf("dlm: cancel %v: %w", k, ErrNotPending)
	}
	res := l.res
	effs := []Effect{ls.refuse(l, ErrCancelled)}
	return append(effs, ls.process(res)...), nil
}

// Tick refuses with ErrTimeout every pending request whose deadline is at
// or before now, oldest deadline first, and grants what they blocked.
func (ls *Lockspace) Tick(now time.Time) []Effect {
	var due []*lock
	for _, l := range ls.timed {
		if !now.Before(l.deadline) {
			due = append(due, l)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		a, b := due[i], due[j]
		if !a.deadline.Equal(b.deadline) {
			return a.deadline.Before(b.deadline)
		}
		return a.seq < b.seq || a.seq == b.seq && a.key.Less(b.key)
	})
	var effs []Effect
	touched := map[*resource]bool{}
	for _, l := range due {
		touched[l.res] = true
		effs = append(effs, ls.refuse(l, ErrTimeout))
	}
	return append(effs, ls.processAll(touched)...)
}

// NextDeadline returns the earliest deadline of a pending request, for the
// shell's timer; ok is false when no request has one.
func (ls *Lockspace) NextDeadline() (t time.Time, ok bool) {
	for _, l := range ls.timed {
		if !ok || l.deadline.Before(t) {
			t, ok = l.deadline, true
		}
	}
	return t, ok
}

// OwnerExit handles the exit of an owner (its process ended): every lock
// of the owner goes at once, granted or not, except Persistent locks that
// hold a mode: those stay granted as orphans (a pending conversion on them
// is dropped, so they keep the mode they held). A value block is
// invalidated when a removed lock held PW or EX. No effect is addressed to
// the exiting owner.
func (ls *Lockspace) OwnerExit(owner Owner) []Effect {
	touched := map[*resource]bool{}
	for _, l := range ls.ownerLocks(owner) {
		touched[l.res] = true
		if l.persistent && l.holds() {
			if l.state == converting {
				l.res.move(l, granted)
				l.rq = 0
				ls.clearDeadline(l)
			}
			l.orphan = true
			continue
		}
		ls.drop(l)
	}
	return ls.processAll(touched)
}

// PurgeOrphans removes the orphaned (persistent) locks left by owner, as if
// it had died holding them (PW or EX invalidates the value block).
func (ls *Lockspace) PurgeOrphans(owner Owner) []Effect {
	touched := map[*resource]bool{}
	for _, l := range ls.ownerLocks(owner) {
		if l.orphan {
			touched[l.res] = true
			ls.drop(l)
		}
	}
	return ls.processAll(touched)
}

// DropNode removes every lock of the owners on node, in every state,
// persistent and orphaned ones included (the node is gone: nothing can
// adopt them, as in OpenDLM and fs/dlm). A value block is invalidated when a
// removed lock held PW or EX. The shell calls it on the master of each
// resource when clmsd reports the node's NODEDOWN.
func (ls *Lockspace) DropNode(node NodeID) []Effect {
	var owners []Owner
	for o := range ls.owners {
		if o.Node == node {
			owners = append(owners, o)
		}
	}
	slices.SortFunc(owners, func(a, b Owner) int { return cmpOwner(a, b) })
	touched := map[*resource]bool{}
	for _, o := range owners {
		for _, l := range ls.ownerLocks(o) {
			touched[l.res] = true
			ls.drop(l)
		}
	}
	return ls.processAll(touched)
}

func cmpOwner(a, b Owner) int {
	switch {
	case a.Less(b):
		return -1
	case b.Less(a):
		return 1
	}
	return 0
}

// ownerLocks returns the owner's locks sorted by id.
func (ls *Lockspace) ownerLocks(owner Owner) []*lock {
	om := ls.owners[owner]
	out := make([]*lock, 0, len(om))
	for _, l := range om {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b *lock) int {
		switch {
		case a.key.ID < b.key.ID:
			return -1
		case a.key.ID > b.key.ID:
			return 1
		}
		return 0
	})
	return out
}

// drop removes a lock whose owner died, invalidating the value block if it
// held PW or EX.
func (ls *Lockspace) drop(l *lock) {
	if l.holds() && (l.gr == PW || l.gr == EX) {
		l.res.lvbValid = false
	}
	ls.remove(l)
}

func (ls *Lockspace) remove(l *lock) {
	l.res.unlink(l)
	ls.clearDeadline(l)
	delete(ls.locks, l.key)
	om := ls.owners[l.key.Owner]
	delete(om, l.key.ID)
	if len(om) == 0 {
		delete(ls.owners, l.key.Owner)
	}
}

func (ls *Lockspace) setDeadline(l *lock, now time.Time, d time.Duration) {
	if d > 0 {
		l.deadline = now.Add(d)
		ls.timed[l.key] = l
	}
}

func (ls *Lockspace) clearDeadline(l *lock) {
	l.deadline = time.Time{}
	delete(ls.timed, l.key)
}

// writeLVB applies the value-block write of a down-conversion or unlock of
// l (which holds l.gr) with flags.
func (ls *Lockspace) writeLVB(l *lock, flags Flags, v LVB) {
	if l.gr != PW && l.gr != EX {
		return
	}
	res := l.res
	switch {
	case flags&InvalidateLVB != 0:
		res.lvbValid = false
		res.lvbSeq++
	case flags&ValBlk != 0:
		res.lvb, res.lvbValid = v, true
		res.lvbSeq++
	default:
		return
	}
	l.lvb, l.hasLVB, l.lvbValid, l.lvbSeq = res.lvb, true, res.lvbValid, res.lvbSeq
}

func (ls *Lockspace) effect(l *lock, kind EffectKind, m Mode, err error) Effect {
	return Effect{Kind: kind, Resource: l.res.name, Key: l.key, Mode: m, Err: err, Seq: l.seq}
}

// grant grants l's pending request (or its down-conversion) in mode m.
// wrote says the request wrote the value block, so it does not read it.
func (ls *Lockspace) grant(l *lock, m Mode, wrote bool) Effect {
	fresh := l.state == waiting
	if l.state != granted {
		l.res.move(l, granted)
	}
	if l.gr != m {
		l.basts = 0 // a new mode: blocking starts a new episode
	}
	switch {
	case m != PW && m != EX:
		l.token = 0
	case fresh || !l.gr.Covers(m):
		// A new grant of PW or EX (a new lock, or an up-conversion): a
		// new token. A down-conversion from EX to PW keeps its own.
		ls.tokens[l.res.name]++
		l.token = ls.tokens[l.res.name]
	}
	l.gr, l.rq = m, 0
	ls.clearDeadline(l)
	e := ls.effect(l, Granted, m, nil)
	e.Token = l.token
	if !wrote && l.flags&ValBlk != 0 && (m == PR || m == PW || m == EX) {
		res := l.res
		l.lvb, l.hasLVB, l.lvbValid, l.lvbSeq = res.lvb, true, res.lvbValid, res.lvbSeq
		e.HasLVB, e.LVB, e.LVBValid = true, res.lvb, res.lvbValid
	}
	return e
}

// refuse ends l's pending request with err: a conversion falls back to its
// granted mode, a new lock is removed.
func (ls *Lockspace) refuse(l *lock, err error) Effect {
	if l.state == converting {
		e := ls.effect(l, Refused, l.gr, err)
		e.Held = true
		l.res.move(l, granted)
		l.rq = 0
		ls.clearDeadline(l)
		return e
	}
	e := ls.effect(l, Refused, 0, err)
	ls.remove(l)
	return e
}

// processAll runs process on the touched resources in name order.
func (ls *Lockspace) processAll(touched map[*resource]bool) []Effect {
	rs := make([]*resource, 0, len(touched))
	for r := range touched {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b *resource) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	var effs []Effect
	for _, r := range rs {
		effs = append(effs, ls.process(r)...)
	}
	return effs
}

// process grants what can be granted on res — conversions first, in queue
// order, then (once no conversion waits) new requests in queue order,
// stopping at the first that cannot be granted so nothing behind it
// overtakes it — then sends the blocking ASTs still owed, and forgets the
// resource once it has no locks.
func (ls *Lockspace) process(res *resource) []Effect {
	var effs []Effect
	for len(res.converting) > 0 {
		c := res.converting[0]
		if !res.compatible(c, c.rq) {
			break
		}
		effs = append(effs, ls.grant(c, c.rq, false))
	}
	for len(res.converting) == 0 && len(res.waiting) > 0 {
		w := res.waiting[0]
		if !res.compatible(w, w.rq) {
			break
		}
		effs = append(effs, ls.grant(w, w.rq, false))
	}
	// Blocking ASTs: a holder is told each mode it blocks once per
	// episode; a mode it no longer blocks (the request was granted,
	// cancelled, ...) is forgotten, so a later request for it starts a new
	// episode.
	want := map[*lock]uint8{}
	for _, p := range slices.Concat(res.converting, res.waiting) {
		res.holders(func(h *lock) {
			if h == p || h.orphan || Compatible(h.gr, p.rq) {
				return
			}
			want[h] |= bit(p.rq)
			if h.basts&bit(p.rq) == 0 {
				h.basts |= bit(p.rq)
				effs = append(effs, Effect{Kind: Blocking, Resource: res.name, Key: h.key, Mode: p.rq, Seq: h.seq})
			}
		})
	}
	res.holders(func(h *lock) { h.basts &= want[h] })
	if res.empty() {
		delete(ls.res, res.name)
	}
	return effs
}
