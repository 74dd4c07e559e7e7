package migrate

import (
	"errors"
	"flag"
	"math/rand/v2"
	"testing"
	"time"
)

var modelSeeds = flag.Int("model.seeds", 0, "TestModel: how many seeds (default 300)")

// TestModel drives seeded random runs of 4 nodes and 3 processes:
// migrations, messages delivered out of order, dropped or cut off,
// freezes and restores that fail, crashes and restarts, nodes declared
// DOWN and UP (also while alive, in the runs without origin crashes), and
// the clock. After every step no process runs in two places (world.check);
// after healing and settling every process runs in exactly one place
// unless a crash took a copy of it.
func TestModel(t *testing.T) {
	seeds := 300
	if *modelSeeds > 0 {
		seeds = *modelSeeds
	}
	if testing.Short() {
		seeds = 60
	}
	for seed := range seeds {
		// Odd seeds may crash origins (the arbiter loses its records and
		// a surrogate or the restarted origin recovers the decision);
		// even seeds keep origins alive but declare live nodes DOWN.
		runModel(t, uint64(seed), seed%2 == 1, 400)
	}
}

func runModel(t testing.TB, seed uint64, crashOrigins bool, steps int) {
	runModelWorld(t, seed, crashOrigins, steps, false)
}

// TestModelAbortWait: with a short AbortWait a source whose target is UP
// but unreachable thaws without the acknowledgement. A process may then
// roll back to its checkpoint after further crashes, but it never runs
// in two places at once, and every process still runs exactly once after
// settling unless a crash took a copy.
func TestModelAbortWait(t *testing.T) {
	seeds := 300
	if *modelSeeds > 0 {
		seeds = *modelSeeds
	}
	for seed := range seeds {
		r := rand.New(rand.NewPCG(uint64(seed), 0x77616974))
		w := newWorld(t, 4, Config{ConfirmTimeout: 3 * time.Second, Retry: time.Second, AbortWait: 2 * time.Second})
		w.rollback = true
		runSteps(w, r, seed%2 == 1, 400)
	}
}

func runModelWorld(t testing.TB, seed uint64, crashOrigins bool, steps int, trace bool) {
	runChoices(t, rand.New(rand.NewPCG(seed, 0x6d6967)), crashOrigins, steps, trace)
}

// chooser picks the model's next step: a seeded rand, or a fuzzer's bytes.
type chooser interface{ IntN(n int) int }

func runChoices(t testing.TB, r chooser, crashOrigins bool, steps int, trace bool) {
	w := newWorld(t, 4, Config{ConfirmTimeout: 3 * time.Second, Retry: time.Second,
		// Wait for the target's acknowledgement of an abort as long as it
		// takes (settle heals): the strict check (no rollback) holds.
		AbortWait: 1000 * time.Hour})
	w.trace = trace
	runSteps(w, r, crashOrigins, steps)
}

func runSteps(w *world, r chooser, crashOrigins bool, steps int) {
	// Origins are nodes 1 and 2; processes start where they were born.
	w.addProc(101, 1, 1)
	w.addProc(102, 1, 3)
	w.addProc(201, 2, 4)
	nodes := []uint32{1, 2, 3, 4}
	pick := func() uint32 { return nodes[r.IntN(len(nodes))] }
	for range steps {
		switch k := r.IntN(100); {
		case k < 12:
			cpids := []uint64{101, 102, 201}
			p := w.procs[cpids[r.IntN(len(cpids))]]
			for n, st := range p.copies {
				if st == cRunning && w.nodes[n].running {
					if mv, err := w.nodes[n].n.Migrate(w.now, p.cpid, p.origin, pick(), CRIU); err == nil {
						w.logf("n%d: migrate %s cpid=%d to n%d", n, mv.ID, p.cpid, mv.Target)
					}
					w.collect(w.nodes[n])
				}
			}
		case k < 50:
			if len(w.queue) > 0 {
				w.deliverAt(r.IntN(len(w.queue)))
			}
		case k < 54:
			if len(w.queue) > 0 {
				i := r.IntN(len(w.queue))
				w.queue = append(w.queue[:i:i], w.queue[i+1:]...)
			}
		case k < 72:
			if len(w.jobs) > 0 {
				var err error
				if r.IntN(8) == 0 {
					err = errors.New("injected")
				}
				w.finish(r.IntN(len(w.jobs)), err)
			}
		case k < 84:
			w.tick(time.Duration(r.IntN(1500)) * time.Millisecond)
		case k < 87:
			a, b := pick(), pick()
			if a != b {
				if a > b {
					a, b = b, a
				}
				w.cut[[2]uint32{a, b}] = true
			}
		case k < 89:
			w.cut = map[[2]uint32]bool{}
		case k < 91:
			n := pick()
			if !crashOrigins && (n == 1 || n == 2) {
				continue
			}
			w.crash(n)
		case k < 95:
			// clmsd notices: crashed nodes go DOWN; without origin
			// crashes, a live non-origin node may be declared DOWN too.
			n := pick()
			m := w.nodes[n]
			if w.up[n] && (!m.running || (!crashOrigins && n > 2)) {
				w.setUp(n, false)
			}
		default:
			n := pick()
			if !w.nodes[n].running {
				if w.up[n] {
					w.setUp(n, false)
				}
				w.restart(n)
			}
			if !w.up[n] {
				w.setUp(n, true)
			}
		}
		w.check()
	}
	w.settle()
	w.checkSettled()
}
