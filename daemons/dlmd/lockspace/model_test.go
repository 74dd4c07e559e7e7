package lockspace

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// The harness drives a Lockspace the way a shell would, and keeps a mirror
// of what each owner knows from the effects it received. After every step
// it checks the core's invariants (Check: no incompatible grants, queues
// well-formed, nothing grantable left waiting, blocking ASTs owed sent) and
// that the mirror agrees with the core lock for lock: every grant answered
// a pending request, every request ended exactly once.

type mlock struct {
	res        string
	granted    bool
	gr         Mode
	pending    bool
	rq         Mode
	persistent bool
	orphan     bool
	order      int   // when the pending request was issued
	queued     bool  // the pending request was not answered by the call that made it
	flags      Flags // of the pending request
	wrote      bool  // the pending request wrote the value block
	token      uint64
}

type lvbState struct {
	v     LVB
	valid bool
}

type harness struct {
	fail     func(format string, args ...any)
	ls       *Lockspace
	now      time.Time
	m        map[Key]*mlock
	nextID   LockID
	nodes    int
	clients  int
	res      []string
	issued   int // requests accepted (Lock, Convert)
	outcomes int // requests ended: granted, refused, dropped with their owner
	grants   int
	refusals map[error]int
	basts    int
	steps    int
	order    int
	lvb      map[string]lvbState // what the value blocks must be
	tokens   map[string]uint64   // the highest fencing token granted per resource
}

func newHarness(fail func(string, ...any), nodes, clients, resources int) *harness {
	ls, err := New("model", Config{UID: 1000, GID: 1000}, root)
	if err != nil {
		fail("%v", err)
	}
	h := &harness{fail: fail, ls: ls, now: t0, m: map[Key]*mlock{}, nodes: nodes, clients: clients,
		refusals: map[error]int{}, lvb: map[string]lvbState{}, tokens: map[string]uint64{}}
	for i := range resources {
		h.res = append(h.res, fmt.Sprintf("r%d", i))
	}
	return h
}

func (h *harness) owner(n int) Owner {
	return Owner{Node: NodeID(n%h.nodes + 1), Client: uint64(n / h.nodes % h.clients)}
}

// apply checks effects against the mirror and updates it.
func (h *harness) apply(op string, effs []Effect) {
	for _, e := range effs {
		ml := h.m[e.Key]
		if ml == nil {
			h.fail("%s: effect %v for an unknown lock", op, e)
			return
		}
		if e.Resource != ml.res {
			h.fail("%s: effect %v: lock is on %s", op, e, ml.res)
		}
		switch e.Kind {
		case Granted:
			if !ml.pending || ml.rq != e.Mode {
				h.fail("%s: %v but pending=%v rq=%v", op, e, ml.pending, ml.rq)
			}
			wantLVB := ml.flags&ValBlk != 0 && !ml.wrote && (e.Mode == PR || e.Mode == PW || e.Mode == EX)
			if st := h.lvbOf(ml.res); e.HasLVB != wantLVB || wantLVB && (e.LVB != st.v || e.LVBValid != st.valid) {
				h.fail("%s: %v: want value block %v %q valid=%v", op, e, wantLVB, lvbText(st.v), st.valid)
			}
			if ml.queued {
				// FIFO: a queued conversion is granted only when no conversion
				// queued before it is still waiting; a queued new request
				// only when no conversion waits and no new request queued
				// before it is still waiting.
				for k, o := range h.m {
					if o != ml && o.res == ml.res && o.pending && o.queued &&
						(o.granted && (!ml.granted || o.order < ml.order) || !o.granted && !ml.granted && o.order < ml.order) {
						h.fail("%s: %v overtakes %v", op, e, k)
					}
				}
			}
			// Fencing tokens: a new grant of PW or EX takes a token
			// above every one before on the resource; a conversion down
			// keeps its own; weaker modes have none.
			switch {
			case e.Mode != PW && e.Mode != EX:
				if e.Token != 0 {
					h.fail("%s: %v: a token in a weak mode", op, e)
				}
			case ml.granted && ml.gr.Covers(e.Mode):
				if e.Token != ml.token {
					h.fail("%s: %v: a conversion down changed the token from %d", op, e, ml.token)
				}
			case e.Token <= h.tokens[ml.res]:
				h.fail("%s: %v: token not above %d", op, e, h.tokens[ml.res])
			default:
				h.tokens[ml.res] = e.Token
			}
			ml.token = e.Token
			ml.pending, ml.granted, ml.gr, ml.rq = false, true, e.Mode, 0
			h.outcomes++
			h.grants++
		case Refused:
			unlocking := strings.Contains(op, "unlock")
			if !ml.pending || e.Held && (!ml.granted || e.Mode != ml.gr) || !e.Held && ml.granted && !unlocking ||
				e.Held && unlocking {
				h.fail("%s: %v but pending=%v granted=%v %v", op, e, ml.pending, ml.granted, ml.gr)
			}
			if !slices.Contains([]error{ErrWouldBlock, ErrTimeout, ErrDeadlock, ErrCancelled}, e.Err) {
				h.fail("%s: %v: unexpected error", op, e)
			}
			h.refusals[e.Err]++
			h.outcomes++
			ml.pending, ml.rq = false, 0
			if !e.Held {
				delete(h.m, e.Key)
			}
		case Blocking:
			if !ml.granted || ml.orphan || Compatible(ml.gr, e.Mode) {
				h.fail("%s: %v to a lock holding %v (granted %v, orphan %v)", op, e, ml.gr, ml.granted, ml.orphan)
			}
			h.basts++
		default:
			h.fail("%s: effect %v", op, e)
		}
	}
}

// verify compares the mirror with the core and runs Check.
func (h *harness) verify(op string) {
	if err := h.ls.Check(); err != nil {
		h.fail("after %s: invariant: %v", op, err)
		return
	}
	n := 0
	for _, name := range h.ls.Resources() {
		for _, li := range h.ls.Dump(name) {
			n++
			ml := h.m[li.Key]
			if ml == nil {
				h.fail("after %s: core has %v, owners do not know it", op, li.Key)
				return
			}
			granted := li.State != StateWaiting
			pending := li.State != StateGranted
			if ml.res != li.Resource || ml.granted != granted || ml.pending != pending ||
				granted && ml.gr != li.Granted || pending && ml.rq != li.Requested || ml.orphan != li.Orphan {
				h.fail("after %s: core %+v, owner believes %+v", op, li, *ml)
			}
		}
	}
	for res := range h.lvb {
		if _, _, ok := h.ls.LVB(res); !ok {
			delete(h.lvb, res) // forgotten with its last lock
		}
	}
	for _, name := range h.ls.Resources() {
		v, valid, _ := h.ls.LVB(name)
		if st := h.lvbOf(name); st.v != v || st.valid != valid {
			h.fail("after %s: %s value block %q valid=%v, want %q valid=%v", op, name, lvbText(v), valid, lvbText(st.v), st.valid)
		}
	}
	if n != len(h.m) || n != h.ls.Len() {
		h.fail("after %s: core has %d locks (%d), owners know %d", op, n, h.ls.Len(), len(h.m))
	}
	if h.outcomes+h.pending() != h.issued {
		h.fail("after %s: %d requests issued, %d ended, %d pending", op, h.issued, h.outcomes, h.pending())
	}
}

func (h *harness) lvbOf(res string) lvbState {
	if st, ok := h.lvb[res]; ok {
		return st
	}
	return lvbState{valid: true}
}

// write applies a down-conversion's or unlock's value-block write by a
// lock holding gr.
func (h *harness) write(res string, gr Mode, f Flags, v LVB) {
	if gr != PW && gr != EX {
		return
	}
	switch {
	case f&InvalidateLVB != 0:
		h.lvb[res] = lvbState{v: h.lvbOf(res).v}
	case f&ValBlk != 0:
		h.lvb[res] = lvbState{v: v, valid: true}
	}
}

// died invalidates the value block if a lost lock held PW or EX.
func (h *harness) died(ml *mlock) {
	if ml.granted && (ml.gr == PW || ml.gr == EX) {
		h.lvb[ml.res] = lvbState{v: h.lvbOf(ml.res).v}
	}
}

// busy reports whether a request is waiting on res (conversions only, if
// convOnly).
func (h *harness) busy(res string, convOnly bool) bool {
	for _, ml := range h.m {
		if ml.res == res && ml.pending && (ml.granted || !convOnly) {
			return true
		}
	}
	return false
}

// issued marks key's request issued now; after the call, queue marks it
// queued if it is still pending.
func (h *harness) queue(key Key) {
	if ml := h.m[key]; ml != nil && ml.pending {
		ml.queued = true
	}
}

func (h *harness) pending() int {
	n := 0
	for _, ml := range h.m {
		if ml.pending {
			n++
		}
	}
	return n
}

// keys returns the mirror's locks matching f, sorted, for reproducible picks.
func (h *harness) keys(f func(*mlock) bool) []Key {
	var ks []Key
	for k, ml := range h.m {
		if f(ml) {
			ks = append(ks, k)
		}
	}
	slices.SortFunc(ks, func(a, b Key) int {
		switch {
		case a.Less(b):
			return -1
		case b.Less(a):
			return 1
		}
		return 0
	})
	return ks
}

// chooser supplies the harness's choices: from a seeded PRNG in the model
// test, from the fuzzer's bytes in the fuzz test.
type chooser interface {
	intn(n int) int
}

var modes = []Mode{NL, CR, CW, PR, PW, EX}

func (h *harness) randLVB(c chooser) LVB {
	var v LVB
	copy(v[:], fmt.Sprintf("v%d", c.intn(1000)))
	return v
}

func (h *harness) timeout(c chooser) time.Duration {
	if c.intn(3) == 0 {
		return time.Duration(1+c.intn(20)) * time.Second
	}
	return 0
}

// step performs one random operation.
func (h *harness) step(c chooser) {
	h.steps++
	var op string
	switch k := c.intn(100); {
	case k < 30: // lock
		o := h.owner(c.intn(h.nodes * h.clients))
		h.nextID++
		r := Request{Owner: o, ID: h.nextID, Resource: h.res[c.intn(len(h.res))], Mode: modes[c.intn(6)], Timeout: h.timeout(c)}
		for _, f := range []Flags{NoQueue, ValBlk, Persistent, Expedite} {
			if c.intn(5) == 0 && (f != Expedite || r.Mode == NL) {
				r.Flags |= f
			}
		}
		op = fmt.Sprintf("lock %v %s %v %v t=%v", r.Owner, r.Resource, r.Mode, r.Flags, r.Timeout)
		busy := h.busy(r.Resource, false)
		effs, err := h.ls.Lock(h.now, Cred{UID: 1000}, r)
		if err != nil {
			h.fail("%s: %v", op, err)
			return
		}
		key := Key{r.Owner, r.ID}
		h.order++
		h.m[key] = &mlock{res: r.Resource, pending: true, rq: r.Mode, persistent: r.Flags&Persistent != 0, order: h.order, flags: r.Flags}
		h.issued++
		h.apply(op, effs)
		if ml := h.m[key]; busy && r.Flags&Expedite == 0 && ml != nil && ml.granted {
			h.fail("%s: granted ahead of the requests waiting", op)
		}
		h.queue(key)
	case k < 50: // convert
		ks := h.keys(func(ml *mlock) bool { return ml.granted && !ml.pending && !ml.orphan })
		if len(ks) == 0 {
			return
		}
		key := ks[c.intn(len(ks))]
		r := Request{Owner: key.Owner, ID: key.ID, Mode: modes[c.intn(6)], Timeout: h.timeout(c), LVB: h.randLVB(c)}
		for _, f := range []Flags{NoQueue, ValBlk, QueCvt, InvalidateLVB} {
			if c.intn(5) == 0 {
				r.Flags |= f
			}
		}
		op = fmt.Sprintf("convert %v %v->%v %v t=%v", key, h.m[key].gr, r.Mode, r.Flags, r.Timeout)
		ml := h.m[key]
		busy := h.busy(ml.res, true)
		down := ml.gr.Covers(r.Mode)
		effs, err := h.ls.Convert(h.now, r)
		if err != nil {
			h.fail("%s: %v", op, err)
			return
		}
		h.order++
		ml.pending, ml.rq, ml.order, ml.flags, ml.wrote, ml.queued = true, r.Mode, h.order, r.Flags, down, false
		if down {
			h.write(ml.res, ml.gr, r.Flags, r.LVB)
		}
		h.issued++
		h.apply(op, effs)
		if !down && busy && r.Flags&QueCvt != 0 && !ml.pending && ml.gr == r.Mode {
			h.fail("%s: QUECVT granted ahead of the conversions waiting", op)
		}
		if down && ml.pending {
			h.fail("%s: a down-conversion waits", op)
		}
		h.queue(key)
	case k < 65: // unlock
		ks := h.keys(func(*mlock) bool { return true })
		if len(ks) == 0 {
			return
		}
		key := ks[c.intn(len(ks))]
		f := []Flags{0, ValBlk, InvalidateLVB}[c.intn(3)]
		op = fmt.Sprintf("unlock %v %v", key, f)
		v := h.randLVB(c)
		if ml := h.m[key]; ml.granted {
			h.write(ml.res, ml.gr, f, v)
		}
		effs, err := h.ls.Unlock(key.Owner, key.ID, f, v)
		if err != nil {
			h.fail("%s: %v", op, err)
			return
		}
		h.apply(op, effs)
		delete(h.m, key)
	case k < 72: // cancel
		ks := h.keys(func(*mlock) bool { return true })
		if len(ks) == 0 {
			return
		}
		key := ks[c.intn(len(ks))]
		op = fmt.Sprintf("cancel %v", key)
		effs, err := h.ls.Cancel(key.Owner, key.ID)
		if h.m[key].pending != (err == nil) || err != nil && !errors.Is(err, ErrNotPending) {
			h.fail("%s: %v", op, err)
			return
		}
		h.apply(op, effs)
	case k < 82: // time passes
		h.now = h.now.Add(time.Duration(c.intn(6)) * time.Second)
		op = fmt.Sprintf("tick %v", h.now.Sub(t0))
		h.apply(op, h.ls.Tick(h.now))
	case k < 88:
		op = "deadlock"
		h.apply(op, h.ls.DetectDeadlocks())
	case k < 93: // an owner exits
		o := h.owner(c.intn(h.nodes * h.clients))
		op = fmt.Sprintf("exit %v", o)
		for _, key := range h.keys(func(*mlock) bool { return true }) {
			ml := h.m[key]
			if key.Owner != o || ml.orphan {
				continue
			}
			if ml.pending {
				h.outcomes++
				ml.pending, ml.rq = false, 0
			}
			if ml.persistent && ml.granted {
				ml.orphan = true
			} else {
				h.died(ml)
				delete(h.m, key)
			}
		}
		h.apply(op, h.ls.OwnerExit(o))
	case k < 95:
		o := h.owner(c.intn(h.nodes * h.clients))
		op = fmt.Sprintf("purge %v", o)
		for _, key := range h.keys(func(ml *mlock) bool { return ml.orphan }) {
			if key.Owner == o {
				h.died(h.m[key])
				delete(h.m, key)
			}
		}
		h.apply(op, h.ls.PurgeOrphans(o))
	case k < 98: // a node dies: its locks go
		n := NodeID(1 + c.intn(h.nodes))
		op = fmt.Sprintf("drop node %d", n)
		h.dropMirror(n)
		h.apply(op, h.ls.DropNode(n))
	default: // the master dies too: a new one rebuilds from the survivors
		n := NodeID(1 + c.intn(h.nodes))
		op = fmt.Sprintf("remaster without node %d", n)
		fresh, err := New(h.ls.Name(), h.ls.Config(), root)
		if err != nil {
			h.fail("%v", err)
			return
		}
		// The shell raises every counter above what the lost master
		// granted (see daemons/dlmd/node): here, the highest tokens.
		for name, tok := range h.tokens {
			fresh.RaiseToken(name, tok)
		}
		var effs []Effect
		for _, name := range h.ls.Resources() {
			var copies []LockInfo
			for _, li := range h.ls.Dump(name) {
				if li.Key.Owner.Node != n {
					copies = append(copies, li)
				}
			}
			if len(copies) == 0 {
				continue
			}
			e, err := fresh.Rebuild(name, copies)
			if err != nil {
				h.fail("%s: %v", op, err)
				return
			}
			effs = append(effs, e...)
		}
		h.ls = fresh
		h.dropMirror(n)
		for _, name := range fresh.Resources() {
			v, valid, _ := fresh.LVB(name)
			h.lvb[name] = lvbState{v, valid}
		}
		h.apply(op, effs)
	}
	h.verify(op)
}

func (h *harness) dropMirror(n NodeID) {
	for _, key := range h.keys(func(*mlock) bool { return true }) {
		if key.Owner.Node == n {
			if h.m[key].pending {
				h.outcomes++
			}
			h.died(h.m[key])
			delete(h.m, key)
		}
	}
}

// drain plays the end of the run: orphans are purged, then every owner
// unlocks what it holds and has no request pending on, and deadlock
// detection runs, until nothing is left. Every pending request must end
// (granted, then unlocked; or refused): none may be stuck.
func (h *harness) drain() {
	for _, key := range h.keys(func(ml *mlock) bool { return ml.orphan }) {
		if h.m[key] == nil {
			continue // purged with an earlier orphan of the same owner
		}
		for _, k := range h.keys(func(ml *mlock) bool { return ml.orphan }) {
			if k.Owner == key.Owner {
				h.died(h.m[k])
				delete(h.m, k)
			}
		}
		h.apply("drain purge", h.ls.PurgeOrphans(key.Owner))
	}
	h.verify("drain purge")
	for round := 0; h.ls.Len() > 0; round++ {
		before := h.outcomes
		ks := h.keys(func(ml *mlock) bool { return ml.granted && !ml.pending })
		for _, key := range ks {
			effs, err := h.ls.Unlock(key.Owner, key.ID, 0, LVB{})
			if err != nil {
				h.fail("drain unlock %v: %v", key, err)
				return
			}
			h.apply("drain unlock", effs)
			delete(h.m, key)
		}
		h.apply("drain deadlock", h.ls.DetectDeadlocks())
		h.verify("drain")
		if len(ks) == 0 && h.outcomes == before {
			var b strings.Builder
			for _, name := range h.ls.Resources() {
				fmt.Fprintf(&b, "\n%s: %+v", name, h.ls.Dump(name))
			}
			h.fail("drain round %d: stuck with %d locks:%s", round, h.ls.Len(), b.String())
			return
		}
	}
	if len(h.m) != 0 || h.outcomes != h.issued {
		h.fail("drain: %d locks known, %d of %d requests ended", len(h.m), h.outcomes, h.issued)
	}
}

type prng struct{ r *rand.Rand }

func (p prng) intn(n int) int { return p.r.IntN(n) }

var (
	modelSeed  = flag.Uint64("lockspace.seed", 0, "run the model test with this seed only")
	modelSeeds = flag.Int("lockspace.seeds", 50, "number of seeds the model test runs")
	modelSteps = flag.Int("lockspace.steps", 10000, "steps per seed in the model test")
)

// TestModel runs seeded random operation sequences (many owners on several
// nodes, few resources so they contend) and checks every step; then drains.
// A failure prints the seed; rerun it with -lockspace.seed=N.
func TestModel(t *testing.T) {
	seeds := make([]uint64, 0, *modelSeeds)
	if *modelSeed != 0 {
		seeds = append(seeds, *modelSeed)
	} else {
		for i := range *modelSeeds {
			seeds = append(seeds, uint64(i+1)*0x9e3779b97f4a7c15)
		}
	}
	steps := *modelSteps
	if testing.Short() {
		steps /= 10
	}
	start := time.Now()
	total := 0
	stats := map[string]int{}
	for _, seed := range seeds {
		// Shapes vary with the seed: 2-4 nodes, 1-4 clients each, 1-6 resources.
		shape := rand.New(rand.NewPCG(seed, 1))
		failed := false
		var h *harness
		fail := func(format string, args ...any) {
			if !failed {
				failed = true
				t.Errorf("seed %d step %d: %s", seed, h.steps, fmt.Sprintf(format, args...))
			}
		}
		h = newHarness(fail, 2+shape.IntN(3), 1+shape.IntN(4), 1+shape.IntN(6))
		c := prng{rand.New(rand.NewPCG(seed, 2))}
		for range steps {
			h.step(c)
			if failed {
				break
			}
		}
		if !failed {
			h.drain()
		}
		if failed {
			t.Fatalf("reproduce with: go test -run TestModel -lockspace.seed=%d", seed)
		}
		total += h.steps
		stats["grants"] += h.grants
		stats["basts"] += h.basts
		for err, n := range h.refusals {
			stats[err.Error()] += n
		}
	}
	t.Logf("%d seeds, %d steps in %v; %v", len(seeds), total, time.Since(start).Round(time.Millisecond), stats)
	for _, k := range []string{"grants", "basts", ErrWouldBlock.Error(), ErrTimeout.Error(), ErrDeadlock.Error(), ErrCancelled.Error()} {
		if *modelSeed == 0 && stats[k] == 0 {
			t.Errorf("the model test never produced %q: it exercises too little", k)
		}
	}
}

// bytesChooser takes choices from fuzz input; exhausted input reads as 0.
type bytesChooser struct {
	b []byte
}

func (c *bytesChooser) intn(n int) int {
	if len(c.b) == 0 {
		return 0
	}
	v := int(c.b[0])
	c.b = c.b[1:]
	if n > 256 {
		if len(c.b) > 0 {
			v = v<<8 | int(c.b[0])
			c.b = c.b[1:]
		}
	}
	return v % n
}

// FuzzLockspace decodes the input as a sequence of operations (each byte a
// choice: which operation, owner, resource, mode, flags...) and checks the
// same invariants as the model test after every one, then drains.
func FuzzLockspace(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 2, 0, 3, 1, 1, 1, 1, 1, 85, 0})
	f.Add([]byte("lock convert unlock cancel tick deadlock exit purge drop remaster"))
	seed := rand.New(rand.NewPCG(7, 7))
	for range 4 {
		b := make([]byte, 400)
		for i := range b {
			b[i] = byte(seed.IntN(256))
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &bytesChooser{b: data}
		h := newHarness(func(format string, args ...any) { t.Fatalf(format, args...) }, 3, 2, 3)
		for len(c.b) > 0 {
			h.step(c)
		}
		h.drain()
	})
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 2)) }
