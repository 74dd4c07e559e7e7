package node

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// TestRandomNetwork drives three Nodes (and five, on fewer seeds) through
// random client operations, message orders, partitions, dlmd crashes,
// restarts and goodbyes, and membership changes, with dlmd.lease set
// differently on some nodes (fixed seeds: deterministic). After every
// step no two clients may hold incompatible locks; at the end, healed and
// given time, every node must be quiet (same directory, no recovery, no
// request unanswered) and every copy must match its master's table.
func TestRandomNetwork(t *testing.T) {
	for _, size := range []struct{ nodes, seeds int }{{3, 300}, {5, 60}} {
		for seed := uint64(1); seed <= uint64(size.seeds); seed++ {
			if s := os.Getenv("DLMD_RANDOM_SEED"); s != "" && s != fmt.Sprint(seed) {
				continue
			}
			rnd := rand.New(rand.NewPCG(seed, seed*7919))
			if !runRandom(t, fmt.Sprintf("%d nodes, seed %d", size.nodes, seed), size.nodes, func(n int) int { return rnd.IntN(n) }, 400, false) {
				return
			}
		}
	}
}

// TestRogueNetwork is TestRandomNetwork with a rogue peer (see rogue):
// a dlmd that is not a member sends hellos and sequences of peer
// messages to the nodes among their own traffic (fixed seeds).
func TestRogueNetwork(t *testing.T) {
	for seed := uint64(1); seed <= 150; seed++ {
		if s := os.Getenv("DLMD_RANDOM_SEED"); s != "" && s != fmt.Sprint(seed) {
			continue
		}
		rnd := rand.New(rand.NewPCG(seed, seed*104729))
		runRandom(t, fmt.Sprintf("rogue, seed %d", seed), 3, func(n int) int { return rnd.IntN(n) }, 400, true)
	}
}

// FuzzNetwork is TestRandomNetwork with the fuzzer's bytes as choices,
// and a rogue peer (see rogue) among the nodes when the first byte is
// odd: the fuzzer picks its hellos and the sequences of messages it
// sends, structured or raw, among the cluster's own traffic.
func FuzzNetwork(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte("some seed bytes that make choices"))
	f.Add([]byte{1, 22, 0, 0, 1, 1, 0, 20, 1, 3, 0, 0, 21, 2, 2, 0, 5, 22, 0, 4, 0, 12, 13, 22, 1, 1, 30, 8, 1, 2, 3, 4, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		i := 0
		choose := func(n int) int {
			if i >= len(data) {
				return 0
			}
			i++
			return int(data[i-1]) % n
		}
		withRogue := len(data) > 0 && data[0]&1 == 1
		runRandom(t, "fuzz", 3, choose, len(data), withRogue)
	})
}

// runRandom runs steps random steps on a cluster of size nodes, at most
// two of them down at a time, with a rogue peer (node size+1) among them
// when withRogue; it reports false when the test failed.
func runRandom(t *testing.T, name string, size int, choose func(int) int, steps int, withRogue bool) bool {
	t.Helper()
	// Some nodes' dlmd.lease differs from the others' (the cluster's
	// lease is the largest).
	leases := map[uint32]time.Duration{}
	for id := uint32(1); id <= uint32(size); id++ {
		leases[id] = []time.Duration{time.Second, time.Second, 300 * time.Millisecond, 3 * time.Second}[choose(4)]
	}
	nw := newNetwork(t, size, time.Second, 2*time.Second, leases)
	var trace []string
	fail := func(format string, args ...any) bool {
		t.Errorf("%s: "+format+"\nlast steps:\n%s", append([]any{name}, append(args, tail(trace, 40))...)...)
		return false
	}
	resources := []string{"a", "b", "c"}
	modes := []lockspace.Mode{lockspace.NL, lockspace.CR, lockspace.PR, lockspace.PW, lockspace.EX}
	flags := []lockspace.Flags{0, 0, lockspace.NoQueue, lockspace.ValBlk, lockspace.Persistent | lockspace.ValBlk}
	pick := func(n int) uint32 { return uint32(1 + choose(n)) }
	sessionOf := func(m *member) (uint64, bool) {
		ids := sortedNodes64(m.n.sessions)
		if len(ids) == 0 {
			return 0, false
		}
		return ids[choose(len(ids))], true
	}
	lockOf := func(m *member, sess uint64) (uint64, bool) {
		var ids []uint64
		for id, cl := range m.n.locks {
			if cl.sess != nil && cl.sess.id == sess {
				ids = append(ids, uint64(id))
			}
		}
		if len(ids) == 0 {
			return 0, false
		}
		slices.Sort(ids)
		return ids[choose(len(ids))], true
	}
	nw.run(200 * time.Millisecond)
	var rg *rogue
	ops := 20
	if withRogue {
		rg, ops = newRogue(uint32(size+1)), 24
	}
	for step := 0; step < steps; step++ {
		m := nw.nodes[pick(size)]
		what := ""
		switch op := choose(ops); {
		case op >= 20:
			what = rg.step(nw, choose)
		case op < 2:
			if m.running && len(m.n.sessions) < 3 {
				m.n.OpenSession(nw.now, int32(100+choose(3)), lockspace.Cred{UID: 1000, GID: 1000})
				what = fmt.Sprintf("open on %d", m.id)
			}
		case op < 6:
			if s, ok := sessionOf(m); ok && m.running {
				r, md, fl := resources[choose(len(resources))], modes[choose(len(modes))], flags[choose(len(flags))]
				var to time.Duration
				if choose(4) == 0 {
					to = 500 * time.Millisecond
				}
				m.n.Lock(nw.now, s, uint64(step), lockspace.Config{UID: 1000, GID: 1000}, &dlmv1.LockRequest{
					Lockspace: "ls", Resource: []byte(r), Mode: pmode(md), Flags: uint32(fl), TimeoutNanos: int64(to), CompletionInReply: choose(2) == 0})
				what = fmt.Sprintf("lock %d.%d %s %v %v", m.id, s, r, md, fl)
			}
		case op < 8:
			if s, ok := sessionOf(m); ok && m.running {
				if id, ok := lockOf(m, s); ok {
					md := modes[choose(len(modes))]
					fl := []lockspace.Flags{0, lockspace.ValBlk, lockspace.QueCvt, lockspace.NoQueue}[choose(4)]
					m.n.Convert(nw.now, s, uint64(step), &dlmv1.ConvertRequest{LockId: id, Mode: pmode(md), Flags: uint32(fl), Lvb: []byte{byte(step)}})
					what = fmt.Sprintf("convert %d.%d #%d %v %v", m.id, s, id, md, fl)
				}
			}
		case op < 10:
			if s, ok := sessionOf(m); ok && m.running {
				if id, ok := lockOf(m, s); ok {
					if choose(3) == 0 {
						m.n.Cancel(nw.now, s, uint64(step), &dlmv1.CancelRequest{LockId: id})
						what = fmt.Sprintf("cancel %d.%d #%d", m.id, s, id)
					} else {
						m.n.Unlock(nw.now, s, uint64(step), &dlmv1.UnlockRequest{LockId: id, Flags: uint32(lockspace.ValBlk), Lvb: []byte{byte(step)}})
						what = fmt.Sprintf("unlock %d.%d #%d", m.id, s, id)
					}
				}
			}
		case op < 11:
			if s, ok := sessionOf(m); ok && m.running {
				m.n.CloseSession(nw.now, s)
				what = fmt.Sprintf("close %d.%d", m.id, s)
			}
		case op < 14:
			// The head of any link: links keep their order, and
			// nothing else does.
			var idx []int
			heads := map[envelope]bool{}
			for i, e := range nw.queue {
				head := envelope{from: e.from, link: e.link}
				if ok, _ := nw.deliverable(e); ok && !heads[head] {
					idx = append(idx, i)
				}
				heads[head] = true
			}
			if len(idx) > 0 {
				i := idx[choose(len(idx))]
				what = fmt.Sprintf("deliver %d->%d %s", nw.queue[i].from, nw.queue[i].to, describe(nw.queue[i].msg))
				nw.deliver(i, false)
			}
		case op < 16:
			nw.stabilize(false)
			what = "stabilize"
		case op < 18:
			nw.step()
			what = "tick"
		case op < 19:
			switch choose(6) {
			case 0:
				if len(nw.cut) == 0 {
					for _, o := range nw.sorted() {
						if o.id != m.id {
							nw.cut[pair(m.id, o.id)] = true
						}
					}
					what = fmt.Sprintf("partition %d", m.id)
				}
			case 1:
				nw.cut = map[[2]uint32]bool{}
				what = "heal"
			case 2:
				if m.running && nw.runningCount() >= max(size-2, 3) {
					m.running = false
					nw.queue = slices.DeleteFunc(nw.queue, func(e envelope) bool { return e.from == m.id })
					what = fmt.Sprintf("crash %d", m.id)
				}
			case 3:
				if m.running && nw.runningCount() >= max(size-2, 3) {
					m.n.Leave(nw.now)
					nw.collect(m)
					nw.stabilize(false)
					m.running = false
					nw.queue = slices.DeleteFunc(nw.queue, func(e envelope) bool { return e.from == m.id })
					what = fmt.Sprintf("leave %d", m.id)
				}
			case 4:
				if !m.running {
					nw.boot(m.id, m.n.Incarnation()+1000)
					what = fmt.Sprintf("restart %d", m.id)
				}
			case 5:
				if !m.running && nw.up[m.id] {
					nw.membership(m.id, false)
					what = fmt.Sprintf("down %d", m.id)
				} else if m.running && !nw.up[m.id] {
					nw.membership(m.id, true)
					what = fmt.Sprintf("up %d", m.id)
				}
			}
		default:
			nw.run(time.Duration(choose(30)) * 100 * time.Millisecond)
			what = "run"
		}
		for _, o := range nw.sorted() {
			nw.collect(o)
		}
		if what != "" {
			trace = append(trace, what)
		}
		if what != "" && verbose {
			fmt.Printf("== %s\n%s", what, nw.out.String())
		}
		nw.out.Reset()
		if err := nw.checkSafety(); err != nil {
			return fail("step %d (%s): %v", step, what, err)
		}
	}
	// Heal everything and give it time: the cluster must settle.
	nw.cut = map[[2]uint32]bool{}
	for _, m := range nw.sorted() {
		if !m.running {
			nw.boot(m.id, m.n.Incarnation()+1000)
		}
		if !nw.up[m.id] {
			nw.membership(m.id, true)
		}
	}
	nw.run(5 * time.Second)
	if verbose {
		fmt.Printf("== settle\n%s", nw.out.String())
	}
	nw.out.Reset()
	if err := nw.checkSafety(); err != nil {
		return fail("settled: %v", err)
	}
	if err := nw.checkSettled(); err != nil {
		return fail("settled: %v", err)
	}
	if rg != nil {
		if err := rg.checkNoTrace(nw); err != nil {
			return fail("settled: %v", err)
		}
	}
	return true
}

var verbose = os.Getenv("DLMD_RANDOM_VERBOSE") != ""

func tail(xs []string, n int) string {
	if len(xs) > n {
		xs = xs[len(xs)-n:]
	}
	out := ""
	for _, x := range xs {
		out += "  " + x + "\n"
	}
	return out
}

func (nw *network) runningCount() int {
	c := 0
	for _, m := range nw.nodes {
		if m.running {
			c++
		}
	}
	return c
}

// run moves the clock by d, delivering after each tick.
func (nw *network) run(d time.Duration) {
	end := nw.now.Add(d)
	for nw.now.Before(end) {
		nw.step()
		nw.stabilize(false)
	}
}

// membership tells every running node that node is UP or not, in a new
// epoch.
func (nw *network) membership(node uint32, up bool) {
	nw.epoch++
	nw.up[node] = up
	for _, o := range nw.sorted() {
		if o.running {
			o.n.Membership(nw.now, nw.epoch, node, up)
			nw.collect(o)
		}
	}
}

// checkSettled checks a quiet cluster: every node runs the same installed
// directory, recovers nothing, has no request unanswered, and every copy
// of a lock a master accepted matches that master's table.
func (nw *network) checkSettled() error {
	var id directory.ID
	for i, m := range nw.sorted() {
		n := m.n
		switch {
		case !m.running:
			return fmt.Errorf("node %d is not running", m.id)
		case n.rec != nil:
			return fmt.Errorf("node %d still recovers %s", m.id, n.rec.id)
		case !n.haveLast:
			return fmt.Errorf("node %d has no directory", m.id)
		case i > 0 && n.last.ID != id:
			return fmt.Errorf("node %d installed %s, node 1 %s", m.id, n.last.ID, id)
		case len(n.retries) > 0:
			p := n.retries[0]
			return fmt.Errorf("node %d retries %v #%d on %s at node %d forever (copy: %v %v master %d; the master masters it: %v)", m.id, p.req.Op, p.req.LockId, p.req.Resource, p.master,
				p.lock.state, p.lock.gr, p.lock.master, nw.nodes[p.master].n.mastered[keyOf(p.req)] != nil)
		case len(n.pend) > 0 || len(n.lookups) > 0 || len(n.outbox) > 0 || len(n.deferred) > 0 || len(n.retries) > 0:
			return fmt.Errorf("node %d has work left: %d requests, %d lookups, %d in the outbox, %d deferred, %d retries",
				m.id, len(n.pend), len(n.lookups), len(n.outbox), len(n.deferred), len(n.retries))
		}
		id = n.last.ID
		for _, ss := range n.sessions {
			if len(ss.parked) > 0 {
				return fmt.Errorf("node %d: session %d has %d requests parked", m.id, ss.id, len(ss.parked))
			}
			if ss.pending != 0 {
				// Every request was answered: a count left over would
				// refuse the session's requests for nothing.
				return fmt.Errorf("node %d: session %d counts %d requests pending", m.id, ss.id, ss.pending)
			}
		}
	}
	for _, m := range nw.sorted() {
		for lid, cl := range m.n.locks {
			if cl.state == 0 {
				return fmt.Errorf("node %d: lock %d on %s was never accepted", m.id, lid, cl.res)
			}
			master := nw.nodes[cl.master]
			if master == nil {
				return fmt.Errorf("node %d: lock %d on %s has no master", m.id, lid, cl.res)
			}
			var found *dlmv1.Lock
			for _, r := range master.n.Dump("ls") {
				if string(r.Name) != cl.res {
					continue
				}
				for _, l := range r.Locks {
					if l.Node == m.id && l.Id == uint64(lid) {
						found = l
					}
				}
			}
			if found == nil {
				return fmt.Errorf("node %d: lock %d on %s (%v) is not in its master's (node %d) table", m.id, lid, cl.res, cl.state, cl.master)
			}
			if lockspace.LockState(found.State) != cl.state || cl.state != lockspace.StateWaiting && mode(found.Granted) != cl.gr {
				return fmt.Errorf("node %d: lock %d on %s is %v %v here, %v %v at node %d", m.id, lid, cl.res, cl.state, cl.gr,
					lockspace.LockState(found.State), mode(found.Granted), cl.master)
			}
		}
	}
	return nil
}
