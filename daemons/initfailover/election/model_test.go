package election

import (
	"flag"
	"fmt"
	"math/rand"
	"slices"
	"testing"
	"time"
)

// The model test runs the cores of three nodes against a model of dlmd's
// init lock (a FIFO of EX requests, a value block that a holder's loss
// invalidates, and the lease: a holder cut off at t is told at t+L and
// nobody is granted before t+L+L/10) and of systemd (a stop takes a random
// time, sometimes longer than the stop timeout, until a kill lands within
// an eighth of it), through crashes, partitions and heals, moves,
// shutdowns and restarts picked by a seeded random source. After every
// step at most one node may run the singleton, and the cluster must not
// stay without one for long once the dust settles.
//
// It also crashes initfailover itself (panic, OOM, watchdog): the process
// dies, its dlmd session ends (the lock and the request dropped at once,
// the value block invalidated), the units stay as systemd has them, and
// the daemon comes back after a delay, or never. A shutdown whose
// services do not stop in time ends the same way (the shell's drain). Two
// setups, by seed:
//
//   - bound (odd seeds): what the package documents. The services are
//     PartOf openssi-init.target, which BindsTo initfailover, so systemd
//     stops them when the daemon dies, and their TimeoutStopSec is at most
//     KillAfter(stop_timeout): every stop lands within KillAfter plus the
//     kill's own time of its start, whoever began it. The daemon may
//     crash at any moment and restart after up to twice the stop timeout,
//     or never.
//   - unbound (even seeds): the services are not bound to the target and
//     never time out by themselves; only initfailover kills them. Then
//     at-most-one holds only through the boot's kill, and only if the
//     daemon crashed while its lock was still granted (or with nothing
//     running) and restarts within StopTimeout/8: the crashes are drawn
//     so.

const (
	modelLease = time.Second
	modelStop  = 4 * time.Second
	modelStep  = 50 * time.Millisecond
)

type modelNode struct {
	id         uint32
	core       *Core
	alive      bool // powered
	cut        bool // partitioned from the others
	running    bool
	stopAt     time.Time // when a stop under way lands (zero: none)
	stopping   bool
	pendingReq bool      // a request dlmd has not queued (cut off)
	lostAt     time.Time // when a cut-off holder is told (zero: not scheduled)
	// heldCut: it held the lock when cut off, and its dlmd believes it
	// still does until it fences (lostAt).
	heldCut bool

	daemon    bool      // initfailover runs (false: crashed)
	restartAt time.Time // when a crashed daemon comes back (zero: never)
	shutAt    time.Time // when its shutdown was asked (zero: not)
}

type lockModel struct {
	holder     uint32
	queue      []uint32
	lvb        [RecordLen]byte
	valid      bool
	blockUntil time.Time // no grant before (a lost holder's lease)
}

type model struct {
	t     *testing.T
	rng   *rand.Rand
	seed  int64
	bound bool // the services are bound and time out by themselves
	now   time.Time
	nodes []*modelNode
	lock  lockModel
	log   []string
}

func (m *model) logf(format string, a ...any) {
	m.log = append(m.log, m.now.Sub(t0).String()+" "+fmt.Sprintf(format, a...))
}

func (m *model) fail(format string, a ...any) {
	m.t.Helper()
	n := len(m.log)
	st := fmt.Sprintf("lock: holder %d queue %v valid %v\n", m.lock.holder, m.lock.queue, m.lock.valid)
	for _, x := range m.nodes {
		cs, _ := x.core.State()
		st += fmt.Sprintf("node %d: alive %v cut %v daemon %v core %v running %v stopping %v pendingReq %v\n", x.id, x.alive, x.cut, x.daemon, cs, x.running, x.stopping, x.pendingReq)
	}
	m.t.Fatalf("seed %d (bound %v): %s\n%slast events:\n%s", m.seed, m.bound, fmt.Sprintf(format, a...), st, joinLines(m.log[max(0, n-40):]))
}

func joinLines(l []string) string {
	s := ""
	for _, x := range l {
		s += "  " + x + "\n"
	}
	return s
}

func (m *model) node(id uint32) *modelNode { return m.nodes[id-1] }

// upFor says whether b counts a as UP: both powered, on the same side.
func (m *model) upFor(a, b *modelNode) bool { return a.alive && b.alive && a.cut == b.cut }

func (m *model) syncUp() {
	for _, b := range m.nodes {
		if !b.alive {
			continue
		}
		for _, a := range m.nodes {
			b.core.SetUp(a.id, m.upFor(a, b))
		}
	}
}

// apply carries out node n's actions.
func (m *model) apply(n *modelNode) {
	for _, a := range n.core.Ready() {
		m.logf("node %d: %v", n.id, a)
		switch a.Kind {
		case RequestLock:
			if n.cut {
				n.pendingReq = true
			} else if !slices.Contains(m.lock.queue, n.id) && m.lock.holder != n.id {
				m.lock.queue = append(m.lock.queue, n.id)
			}
		case ReleaseLock:
			if m.lock.holder != n.id {
				if n.cut || !n.lostAt.IsZero() {
					// Cut off: its dlmd's unlock reaches nobody;
					// the others recover the lock.
					continue
				}
				m.fail("node %d releases a lock held by %d", n.id, m.lock.holder)
			}
			m.lock.holder, m.lock.lvb, m.lock.valid = 0, a.Value, a.Valid
		case StartUnits:
			if !n.shutAt.IsZero() {
				m.fail("node %d starts the singleton after its shutdown was asked", n.id)
			}
			if m.lock.holder != n.id && !n.heldCut {
				m.fail("node %d starts without the lock (holder %d)", n.id, m.lock.holder)
			}
			n.running, n.stopping = true, false
			for _, o := range m.nodes {
				if o != n && o.running {
					m.fail("node %d starts the singleton while node %d runs it", n.id, o.id)
				}
			}
		case StopUnits:
			m.beginStop(n)
		case KillUnits:
			if k := m.now.Add(modelStop / 8); n.stopAt.IsZero() || k.Before(n.stopAt) {
				n.stopAt = k
			}
		}
	}
}

// beginStop has systemd stop the units, unless a stop is under way (a
// stop job already queued is merged with it, its timeout running on).
func (m *model) beginStop(n *modelNode) {
	if n.stopping {
		return
	}
	n.stopping = true
	// Usually quick, sometimes hung past the stop timeout.
	d := time.Duration(m.rng.Intn(3)) * modelStep
	if m.rng.Intn(4) == 0 {
		d = modelStop * 2
	}
	if m.bound {
		// TimeoutStopSec <= KillAfter: systemd kills them itself.
		d = min(d, KillAfter(modelStop)+modelStop/8)
	}
	n.stopAt = m.now.Add(d)
}

// crash kills node n's initfailover: its session ends at once, and the
// units stay as they are, but for systemd stopping what is bound to the
// target. It restarts after delay, or never (delay < 0).
func (m *model) crash(n *modelNode, delay time.Duration) {
	m.logf("node %d: initfailover crashes (restart in %v)", n.id, delay)
	n.daemon = false
	n.pendingReq, n.lostAt, n.heldCut, n.shutAt = false, time.Time{}, false, time.Time{}
	n.core.Ready() // dropped with the process
	if !n.cut {
		m.lock.queue = slices.DeleteFunc(m.lock.queue, func(id uint32) bool { return id == n.id })
		if m.lock.holder == n.id {
			m.lock.holder, m.lock.valid = 0, false
		}
	}
	if m.bound && (n.running || n.stopping) {
		m.beginStop(n)
	}
	n.restartAt = time.Time{}
	if delay >= 0 {
		n.restartAt = m.now.Add(delay)
	}
}

// crashDelay draws how long a crashed daemon stays down (< 0: never).
func (m *model) crashDelay() time.Duration {
	if !m.bound {
		// Under StopTimeout/8, counting the step the model
		// rounds a restart up to.
		return time.Duration(m.rng.Int63n(int64(modelStop/8 - modelStep)))
	}
	if m.rng.Intn(4) == 0 {
		return -1
	}
	return time.Duration(m.rng.Int63n(int64(2 * modelStop)))
}

// restart starts node n's initfailover again on a node still up.
func (m *model) restart(n *modelNode) {
	m.logf("node %d: initfailover restarts", n.id)
	if !n.cut {
		m.lock.queue = slices.DeleteFunc(m.lock.queue, func(id uint32) bool { return id == n.id })
		if m.lock.holder == n.id {
			m.lock.holder, m.lock.valid = 0, false
		}
	}
	n.core = New(Config{Self: n.id, StopTimeout: modelStop, Nonce: m.rng.Uint64()})
	n.daemon, n.restartAt, n.shutAt = true, time.Time{}, time.Time{}
	n.pendingReq, n.lostAt, n.heldCut = false, time.Time{}, false
	m.syncUp()
	n.core.Start(m.now)
	m.apply(n)
}

// drain is the shell's limit on a shutdown: the services stop and the
// lock is released within it, or the process exits dropping the lock.
const drain = modelStop + 5*time.Second

// settle delivers what is due: grants, stops landing, losses, ticks.
func (m *model) settle() {
	for changed := true; changed; {
		changed = false
		for _, n := range m.nodes {
			if !n.alive {
				continue
			}
			if !n.daemon {
				if n.stopping && !n.stopAt.IsZero() && !m.now.Before(n.stopAt) {
					n.running, n.stopping, n.stopAt = false, false, time.Time{}
					changed = true
				}
				if !n.restartAt.IsZero() && !m.now.Before(n.restartAt) {
					m.restart(n)
					changed = true
				}
				continue
			}
			if st, _ := n.core.State(); !n.shutAt.IsZero() && st != Done && !m.now.Before(n.shutAt.Add(drain)) {
				m.logf("node %d: its services did not stop in time; it exits", n.id)
				m.crash(n, m.crashDelay())
				changed = true
				continue
			}
			if !n.lostAt.IsZero() && !m.now.Before(n.lostAt) {
				n.lostAt, n.heldCut = time.Time{}, false
				m.logf("node %d: fenced", n.id)
				n.core.Lost(m.now)
				changed = true
			}
			if n.stopping && !n.stopAt.IsZero() && !m.now.Before(n.stopAt) {
				n.running, n.stopping, n.stopAt = false, false, time.Time{}
				n.core.UnitsStopped(m.now)
				changed = true
			}
			n.core.Tick(m.now)
			m.apply(n)
		}
		if m.lock.holder == 0 && len(m.lock.queue) > 0 && !m.now.Before(m.lock.blockUntil) {
			id := m.lock.queue[0]
			m.lock.queue = m.lock.queue[1:]
			m.lock.holder = id
			m.logf("grant to %d (valid %v)", id, m.lock.valid)
			n := m.node(id)
			if !n.daemon {
				m.fail("grant to node %d, whose initfailover is down", id)
			}
			n.core.Granted(m.now, m.lock.lvb, m.lock.valid)
			m.apply(n)
			changed = true
		}
	}
	for _, a := range m.nodes {
		for _, b := range m.nodes {
			if a != b && a.running && b.running {
				m.fail("nodes %d and %d run the singleton at once", a.id, b.id)
			}
		}
	}
}

// lose takes node n off the lock as dlmd would when it is cut off or
// dead at now: the value block invalidated, no grant before its lease
// ran out, its waiting request gone.
func (m *model) lose(n *modelNode) {
	m.lock.queue = slices.DeleteFunc(m.lock.queue, func(id uint32) bool { return id == n.id })
	if m.lock.holder == n.id {
		m.lock.holder, m.lock.valid = 0, false
		m.lock.blockUntil = m.now.Add(modelLease + modelLease/10)
	}
}

func (m *model) boot(n *modelNode) {
	// A new process: the old one's session ended, its lock and request
	// with it (dlmd drops them at once, invalidating the value block).
	m.lock.queue = slices.DeleteFunc(m.lock.queue, func(id uint32) bool { return id == n.id })
	if m.lock.holder == n.id {
		m.lock.holder, m.lock.valid = 0, false
	}
	n.core = New(Config{Self: n.id, StopTimeout: modelStop, Nonce: m.rng.Uint64()})
	n.alive, n.running, n.stopping, n.stopAt, n.pendingReq, n.lostAt, n.heldCut = true, false, false, time.Time{}, false, time.Time{}, false
	n.daemon, n.restartAt, n.shutAt = true, time.Time{}, time.Time{}
	m.syncUp()
	n.core.Start(m.now)
	m.apply(n)
}

var (
	modelSeeds = flag.Int64("election.seeds", 1000, "number of seeds the model test runs")
	modelSeed  = flag.Int64("election.seed", 0, "run only this seed (0: all)")
)

func TestModel(t *testing.T) {
	for seed := int64(1); seed <= *modelSeeds; seed++ {
		if *modelSeed != 0 && seed != *modelSeed {
			continue
		}
		m := &model{t: t, rng: rand.New(rand.NewSource(seed)), now: t0, seed: seed, bound: seed%2 == 1}
		for i := uint32(1); i <= 3; i++ {
			m.nodes = append(m.nodes, &modelNode{id: i})
		}
		for _, n := range m.nodes {
			m.boot(n)
		}
		lastRun := m.now
		for step := 0; step < 600; step++ {
			n := m.nodes[m.rng.Intn(3)]
			switch op := m.rng.Intn(40); {
			case op == 0 && n.alive: // power loss
				m.logf("node %d: power loss", n.id)
				n.alive, n.running, n.stopping = false, false, false
				// Its requests die with it.
				n.pendingReq, n.lostAt, n.heldCut = false, time.Time{}, false
				m.lose(n)
				m.syncUp()
			case op == 1 && !n.alive:
				m.logf("node %d: boots", n.id)
				m.boot(n)
			case op == 2 && n.alive && !n.cut: // cut off
				m.logf("node %d: cut off", n.id)
				n.cut = true
				n.heldCut = n.heldCut || m.lock.holder == n.id
				if m.lock.holder == n.id || slices.Contains(m.lock.queue, n.id) {
					// Its dlmd fences at the end of its lease: its
					// session ends, with the lock or the request.
					n.lostAt = m.now.Add(modelLease)
					if slices.Contains(m.lock.queue, n.id) {
						n.pendingReq = false
					}
				}
				m.lose(n)
				m.syncUp()
			case op == 3 && n.cut: // heal
				m.logf("node %d: healed", n.id)
				n.cut = false
				m.syncUp()
				if n.pendingReq && m.lock.holder != n.id && !slices.Contains(m.lock.queue, n.id) {
					m.lock.queue = append(m.lock.queue, n.id)
				}
				n.pendingReq = false
			case op == 4 && n.alive && n.daemon:
				target := uint32(m.rng.Intn(3) + 1)
				err := n.core.Move(m.now, target)
				m.logf("node %d: move to %d: %v", n.id, target, err)
				m.apply(n)
			case (op == 5 || op == 6 && stoppingLost(n)) && n.alive && n.daemon:
				m.logf("node %d: shutdown", n.id)
				if n.shutAt.IsZero() {
					n.shutAt = m.now
				}
				n.core.Shutdown(m.now)
				m.apply(n)
			case op == 7 && n.alive && n.daemon && (m.bound || m.lock.holder == n.id && !n.cut || !n.running && !n.stopping):
				m.crash(n, m.crashDelay())
			default:
				m.now = m.now.Add(modelStep)
			}
			// A node shut down is restarted, as systemd would.
			for _, x := range m.nodes {
				if x.alive && x.daemon {
					if st, _ := x.core.State(); st == Done && m.rng.Intn(10) == 0 {
						m.restart(x)
					}
				}
			}
			m.settle()
			any := false
			for _, x := range m.nodes {
				any = any || x.running
			}
			if any {
				lastRun = m.now
			}
		}
		// Heal, power and wait: a single init must come back.
		for _, n := range m.nodes {
			if !n.alive {
				m.boot(n)
			}
			if n.cut {
				n.cut = false
				if n.pendingReq && m.lock.holder != n.id && !slices.Contains(m.lock.queue, n.id) {
					m.lock.queue = append(m.lock.queue, n.id)
				}
				n.pendingReq = false
			}
		}
		m.syncUp()
		for _, n := range m.nodes {
			if st, _ := n.core.State(); st == Done || !n.daemon {
				m.restart(n)
			}
		}
		for i := 0; i < 1000; i++ {
			m.now = m.now.Add(modelStep)
			// One asked to shut down while booting ends Done
			// only once its stop lands.
			for _, n := range m.nodes {
				if st, _ := n.core.State(); st == Done {
					m.restart(n)
				}
			}
			m.settle()
		}
		count := 0
		for _, n := range m.nodes {
			if n.running {
				count++
			}
		}
		if count != 1 {
			m.fail("%d nodes run the singleton after healing (last seen running %v ago)", count, m.now.Sub(lastRun))
		}
	}
}

// stoppingLost says whether n's core is stopping its services after a
// lost lock (where a shutdown must not let it queue again).
func stoppingLost(n *modelNode) bool {
	st, _ := n.core.State()
	return st == Stopping && n.core.stopWhy == forLost
}
