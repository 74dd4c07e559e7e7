package migrate

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// world is an in-memory cluster of Nodes and of the processes they move,
// for tests: it plays the shells (links, the freeze and restore jobs,
// clmsd's view, the clock) and lets a test deliver, drop and reorder
// messages, cut and heal links, crash, restart and declare nodes DOWN or
// UP, and move a fake clock. A crashed node loses its vprocd and every
// process copy on it. After every step the invariant holds: no process
// runs in two places.
type world struct {
	t      testing.TB
	now    time.Time
	cfg    Config
	epoch  uint64
	up     map[uint32]bool
	nodes  map[uint32]*member
	queue  []envelope
	cut    map[[2]uint32]bool
	jobs   []job
	procs  map[uint64]*proc
	out    strings.Builder
	trace  bool
	failed error
	// rollback accepts a move whose source thawed and whose target
	// resumed, at different times (AbortWait's documented risk); two
	// running copies at once are never accepted.
	rollback bool
}

type member struct {
	// table is the shell's record of where processes went, from this
	// node's Locations (pgroup's origin table).
	table   map[uint64]uint32
	id      uint32
	inc     uint64
	n       *Node
	running bool
}

// envelope is a message in flight, on the link between the two
// vprocds (incarnations) that existed when it was sent: a restart of
// either end breaks the link and loses it.
type envelope struct {
	msg            Message
	fromInc, toInc uint64
}

type job struct {
	node uint32
	kind ActionKind
	move Move
	inc  uint64
	// exists: the process already has a copy on the node.
	exists bool
}

type copyState uint8

const (
	cRunning copyState = iota + 1
	cFrozen
	cRestoring
	cStopped
)

var copyNames = map[copyState]string{cRunning: "running", cFrozen: "frozen", cRestoring: "restoring", cStopped: "stopped"}

// proc is one cluster process and its copies, by node.
type proc struct {
	cpid   uint64
	origin uint32
	copies map[uint32]copyState
	// crashed: a crash destroyed a copy of it (the process may be lost).
	crashed bool
	// acted records, per move, what its source and target did.
	acted map[ID][2]ActionKind
	// owner is, per node, the move whose restore made its copy.
	owner map[uint32]ID
	// located is where its arbiter last recorded it.
	located uint32
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newWorld(t testing.TB, n int, cfg Config) *world {
	w := &world{t: t, now: t0, cfg: cfg, epoch: 1, up: map[uint32]bool{}, nodes: map[uint32]*member{},
		cut: map[[2]uint32]bool{}, procs: map[uint64]*proc{}}
	for i := 1; i <= n; i++ {
		w.up[uint32(i)] = true
	}
	for i := 1; i <= n; i++ {
		w.boot(uint32(i), 1)
	}
	return w
}

func (w *world) boot(id uint32, inc uint64) {
	c := w.cfg
	c.Node, c.Incarnation = id, inc
	m := &member{id: id, inc: inc, n: New(c), running: true, table: map[uint64]uint32{}}
	w.nodes[id] = m
	m.n.Start(w.now, w.epoch, w.upList())
	w.collect(m)
}

func (w *world) upList() []uint32 {
	var out []uint32
	for n, ok := range w.up {
		if ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func (w *world) ids() []uint32 {
	out := make([]uint32, 0, len(w.nodes))
	for id := range w.nodes {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func (w *world) blocked(a, b uint32) bool {
	if a > b {
		a, b = b, a
	}
	return w.cut[[2]uint32{a, b}]
}

func (w *world) logf(format string, args ...any) {
	fmt.Fprintf(&w.out, format+"\n", args...)
}

func (w *world) fail(err error) {
	if w.failed == nil {
		w.failed = err
	}
}

// addProc makes a process running on node at, whose origin is origin.
func (w *world) addProc(cpid uint64, origin, at uint32) {
	w.procs[cpid] = &proc{cpid: cpid, origin: origin, copies: map[uint32]copyState{at: cRunning}, acted: map[ID][2]ActionKind{}, owner: map[uint32]ID{}, located: at}
}

// collect carries out what m's Node asks for.
func (w *world) collect(m *member) {
	if !m.running {
		return
	}
	rd := m.n.Ready()
	for _, a := range rd.Actions {
		w.apply(m, a)
	}
	for _, msg := range rd.Messages {
		var toInc uint64
		if to := w.nodes[msg.To]; to != nil {
			toInc = to.inc
		}
		w.queue = append(w.queue, envelope{msg: msg, fromInc: m.inc, toInc: toInc})
	}
	for _, l := range rd.Locations {
		w.logf("n%d: located cpid=%d at n%d", m.id, l.CPID, l.Node)
		m.table[l.CPID] = l.Node
		if p := w.procs[l.CPID]; p != nil {
			p.located = l.Node
		}
	}
	for _, r := range rd.Results {
		if r.Err != nil {
			w.logf("n%d: move %s failed: %v", m.id, r.Move.ID, r.Err)
		} else {
			w.logf("n%d: move %s done: cpid=%d now at n%d", m.id, r.Move.ID, r.Move.CPID, r.Move.Target)
		}
	}
	w.check()
}

// apply is the shell acting on a process copy.
func (w *world) apply(m *member, a Action) {
	w.logf("n%d: %s %s cpid=%d", m.id, a.Kind, a.Move.ID, a.Move.CPID)
	p := w.procs[a.Move.CPID]
	if p == nil {
		w.fail(fmt.Errorf("n%d: %s of unknown cpid %d", m.id, a.Kind, a.Move.CPID))
		return
	}
	st, has := p.copies[m.id]
	record := func(i int) {
		r := p.acted[a.Move.ID]
		r[i] = a.Kind
		p.acted[a.Move.ID] = r
	}
	switch a.Kind {
	case Freeze:
		if has && st == cRunning {
			p.copies[m.id] = cFrozen
		}
		w.jobs = append(w.jobs, job{node: m.id, kind: Freeze, move: a.Move, inc: m.inc})
	case Thaw:
		record(0)
		if has && st == cFrozen {
			p.copies[m.id] = cRunning
		}
	case End:
		record(0)
		if has && st == cFrozen {
			delete(p.copies, m.id)
		} else {
			w.fail(fmt.Errorf("n%d: end of cpid %d in state %v", m.id, p.cpid, copyNames[st]))
		}
	case Restore:
		if has {
			// The shell refuses to restore over a copy it holds.
			w.jobs = append(w.jobs, job{node: m.id, kind: Restore, move: a.Move, inc: m.inc, exists: true})
			return
		}
		p.copies[m.id] = cRestoring
		p.owner[m.id] = a.Move.ID
		w.jobs = append(w.jobs, job{node: m.id, kind: Restore, move: a.Move, inc: m.inc})
	case Resume:
		record(1)
		if has && st == cStopped && p.owner[m.id] == a.Move.ID {
			p.copies[m.id] = cRunning
		} else {
			w.fail(fmt.Errorf("n%d: resume of cpid %d in state %v", m.id, p.cpid, copyNames[st]))
		}
	case Discard:
		record(1)
		if has && p.owner[m.id] == a.Move.ID && st != cRunning {
			delete(p.copies, m.id)
		}
	}
}

// check is the invariant after every step: no process runs in two places,
// no move has its source thaw and its target resume (two lives of one
// process, even at different times: a rollback), and none has its source
// end and its target discard (a process lost with no crash).
func (w *world) check() {
	for _, p := range w.procs {
		running := 0
		for _, st := range p.copies {
			if st == cRunning {
				running++
			}
		}
		if running > 1 {
			w.fail(fmt.Errorf("cpid %d runs in %d places: %v", p.cpid, running, p.describe()))
		}
		for id, r := range p.acted {
			if r[0] == Thaw && r[1] == Resume && !w.rollback {
				w.fail(fmt.Errorf("move %s of cpid %d: the source thawed and the target resumed", id, p.cpid))
			}
			if r[0] == End && r[1] == Discard {
				w.fail(fmt.Errorf("move %s of cpid %d: the source ended and the target discarded", id, p.cpid))
			}
		}
	}
	if w.failed != nil {
		w.t.Helper()
		w.t.Fatalf("invariant: %v\n%s", w.failed, w.out.String())
	}
}

func (p *proc) describe() string {
	var parts []string
	for _, n := range sortedNodes(p.copies) {
		parts = append(parts, fmt.Sprintf("n%d:%s", n, copyNames[p.copies[n]]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func sortedNodes[V any](m map[uint32]V) []uint32 {
	out := make([]uint32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// locate plays pgroup's origin table, complete (the survivors'
// reports in): where each process runs or is frozen, else where this
// node last recorded it.
func (w *world) locate(m *member) {
	for _, p := range w.procs {
		at := m.table[p.cpid]
		for n, st := range p.copies {
			if st == cRunning || st == cFrozen {
				at = n
			}
		}
		m.n.Locate(p.cpid, at)
	}
}

// deliverAt delivers the i-th message in flight (dropped when a link is
// cut or an end is not running).
func (w *world) deliverAt(i int) {
	e := w.queue[i]
	w.queue = append(w.queue[:i:i], w.queue[i+1:]...)
	to, from := w.nodes[e.msg.To], w.nodes[e.msg.From]
	if to == nil || !to.running || from == nil || !from.running || w.blocked(e.msg.From, e.msg.To) ||
		to.inc != e.toInc || from.inc != e.fromInc {
		if w.trace {
			w.logf("lost: %s", e.msg)
		}
		return
	}
	if w.trace {
		w.logf("deliver: %s", e.msg)
	}
	w.locate(to)
	to.n.Step(w.now, e.msg)
	w.collect(to)
}

// next is the index of the next message from a to b (0 means any), or -1.
func (w *world) next(a, b uint32) int {
	for i, e := range w.queue {
		if (a == 0 || e.msg.From == a) && (b == 0 || e.msg.To == b) {
			return i
		}
	}
	return -1
}

// finish completes the i-th job, with err.
func (w *world) finish(i int, err error) {
	j := w.jobs[i]
	w.jobs = append(w.jobs[:i:i], w.jobs[i+1:]...)
	m := w.nodes[j.node]
	if m == nil || !m.running || m.inc != j.inc {
		return
	}
	p := w.procs[j.move.CPID]
	switch j.kind {
	case Freeze:
		if err == nil && (p == nil || p.copies[j.node] != cFrozen) {
			err = errors.New("no such process")
		}
		m.n.Frozen(w.now, j.move.ID, err)
	case Restore:
		if j.exists {
			if err == nil {
				err = errors.New("the process is already here")
			}
		} else if err != nil {
			delete(p.copies, j.node)
		} else {
			p.copies[j.node] = cStopped
		}
		m.n.Restored(w.now, j.move.ID, err)
	}
	w.collect(m)
}

func (w *world) nextJob(node uint32, kind ActionKind) int {
	for i, j := range w.jobs {
		if (node == 0 || j.node == node) && (kind == 0 || j.kind == kind) {
			return i
		}
	}
	return -1
}

// tick moves the clock by d and ticks every running node.
func (w *world) tick(d time.Duration) {
	w.now = w.now.Add(d)
	for _, id := range w.ids() {
		m := w.nodes[id]
		if m.running {
			w.locate(m)
			m.n.Tick(w.now)
			w.collect(m)
		}
	}
}

// crash kills node id's vprocd and every process copy on it.
func (w *world) crash(id uint32) {
	m := w.nodes[id]
	if m == nil || !m.running {
		return
	}
	m.running = false
	for _, p := range w.procs {
		if _, ok := p.copies[id]; ok {
			delete(p.copies, id)
			p.crashed = true
		}
	}
	w.logf("n%d: crashed", id)
}

func (w *world) restart(id uint32) {
	m := w.nodes[id]
	if m == nil || m.running {
		return
	}
	w.boot(id, m.inc+1)
	w.logf("n%d: restarted (incarnation %d)", id, m.inc+1)
}

// setUp is clmsd's new view: node id UP or DOWN, told to every running
// node.
func (w *world) setUp(id uint32, up bool) {
	w.epoch++
	w.up[id] = up
	// pgroup forgets what an arbiter recorded once it stops being the
	// origin or surrogate of those processes; a new one starts from the
	// survivors' reports.
	view := New(Config{})
	view.Start(w.now, w.epoch, w.upList())
	for _, m := range w.nodes {
		for c := range m.table {
			if p := w.procs[c]; p == nil || !view.isArbiterFor(p.origin, m.id) {
				delete(m.table, c)
			}
		}
	}
	for _, n := range w.ids() {
		m := w.nodes[n]
		if m.running {
			w.locate(m)
			m.n.Membership(w.now, w.epoch, w.upList())
			w.collect(m)
		}
	}
}

// settle heals the network, restarts and brings UP every node, and runs
// until nothing is in flight and no timer is pending: every move must
// then have ended.
func (w *world) settle() {
	w.cut = map[[2]uint32]bool{}
	for _, id := range w.ids() {
		if !w.nodes[id].running {
			if w.up[id] {
				w.setUp(id, false)
			}
			w.restart(id)
		}
		if !w.up[id] {
			w.setUp(id, true)
		}
	}
	for range 10000 {
		switch {
		case len(w.queue) > 0:
			w.deliverAt(0)
		case len(w.jobs) > 0:
			w.finish(0, nil)
		default:
			var at time.Time
			for _, m := range w.nodes {
				if d := m.n.NextDeadline(); !d.IsZero() && (at.IsZero() || d.Before(at)) {
					at = d
				}
			}
			if at.IsZero() {
				return
			}
			if at.After(w.now) {
				w.tick(at.Sub(w.now))
			} else {
				w.tick(0)
			}
		}
	}
	var stuck []string
	for _, id := range w.ids() {
		n := w.nodes[id].n
		for _, s := range n.sources {
			stuck = append(stuck, fmt.Sprintf("n%d source %s state=%d", id, s.move.ID, s.state))
		}
		for _, t := range n.targets {
			stuck = append(stuck, fmt.Sprintf("n%d target %s state=%d", id, t.move.ID, t.state))
		}
		for _, a := range n.arbs {
			if a.outcome == Undecided {
				stuck = append(stuck, fmt.Sprintf("n%d arbiter %s answers=%d", id, a.move.ID, len(a.answers)))
			}
		}
	}
	w.t.Fatalf("settle: no quiet after 10000 steps: %s\n%s", strings.Join(stuck, "; "), w.out.String())
}

// checkSettled is the liveness check after settle: every process runs in
// exactly one place, unless a crash took a copy of it (then at most one),
// and no node still holds a move.
func (w *world) checkSettled() {
	for _, id := range w.ids() {
		n := w.nodes[id].n
		if len(n.sources)+len(n.targets) > 0 {
			w.t.Fatalf("n%d still moves: %d as source, %d as target\n%s", id, len(n.sources), len(n.targets), w.out.String())
		}
	}
	cpids := make([]uint64, 0, len(w.procs))
	for c := range w.procs {
		cpids = append(cpids, c)
	}
	sort.Slice(cpids, func(i, j int) bool { return cpids[i] < cpids[j] })
	for _, c := range cpids {
		p := w.procs[c]
		running := 0
		for _, st := range p.copies {
			if st != cRunning {
				w.t.Fatalf("cpid %d left %v after settling\n%s", c, p.describe(), w.out.String())
			}
			running++
		}
		if running != 1 && !(running == 0 && p.crashed) {
			w.t.Fatalf("cpid %d runs in %d places after settling (%s)\n%s", c, running, p.describe(), w.out.String())
		}
	}
}
