package coherence

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
)

// kindName names an action kind for the counts.
func kindName(k ActionKind) string {
	return map[ActionKind]string{Request: "request", Run: "run", WriteBack: "write back", Invalidate: "invalidate", Convert: "convert", Cancel: "cancel"}[k]
}

// lockManager is one dlmd resource, as the nodes' shells see it: the mode
// each node is granted, the requests waiting in order (the first is
// granted once compatible with every other node's grant), blocking
// callbacks sent to every node that keeps a waiting request waiting, and,
// as dlmd does, a conversion that would deadlock with one waiting
// already refused at once.
type lockManager struct {
	granted []Mode
	waiting []request
	told    map[int]Mode // callbacks sent since the grants last changed
}

type request struct {
	node int
	mode Mode
}

// message is one report on its way to a node's Inode.
type message struct {
	kind string // "granted", "blocking", "cancelled", "refused", "written"
	mode Mode
	n    uint64 // the write back's number
}

type runningOp struct {
	a      Access
	orphan bool
}

type model struct {
	r     *rand.Rand
	lm    lockManager
	nodes []*Inode
	inbox [][]message
	// running are each node's operations let go: their access, and
	// whether the lock was lost under them (orphans, not checked).
	running []map[uint64]runningOp
	nextOp  uint64
	begun   int
	ended   int
	// seen counts the actions and reports, by name, over a run.
	seen map[string]int
	// access is each operation's, by id.
	access map[uint64]Access
}

func newModel(seed uint64, n int) *model {
	m := &model{r: rand.New(rand.NewPCG(seed, 3)), lm: lockManager{granted: make([]Mode, n), told: map[int]Mode{}}, seen: map[string]int{}, access: map[uint64]Access{}}
	for range n {
		m.nodes = append(m.nodes, &Inode{})
		m.inbox = append(m.inbox, nil)
		m.running = append(m.running, map[uint64]runningOp{})
	}
	return m
}

// apply carries out node k's actions as its shell would; begun are the
// accesses of the operations begun and not yet let go.
func (m *model) apply(t *testing.T, k int, acts []Action) {
	t.Helper()
	for _, a := range acts {
		m.seen[kindName(a.Kind)]++
		switch a.Kind {
		case Request:
			if m.lm.deadlocks(k, a.Mode) {
				m.inbox[k] = append(m.inbox[k], message{kind: "refused"})
				continue
			}
			m.lm.waiting = append(m.lm.waiting, request{k, a.Mode})
		case Run:
			m.running[k][a.Op] = runningOp{a: m.access[a.Op]}
		case WriteBack:
			m.inbox[k] = append(m.inbox[k], message{kind: "written", n: a.Op})
		case Invalidate:
		case Convert:
			if slices.ContainsFunc(m.lm.waiting, func(q request) bool { return q.node == k }) {
				t.Fatalf("node %d converts to %v while its request waits (a lock manager refuses a second conversion)", k, a.Mode)
			}
			if !m.lm.granted[k].Covers(a.Mode) {
				t.Fatalf("node %d converts %v up to %v", k, m.lm.granted[k], a.Mode)
			}
			m.lm.granted[k] = a.Mode
			m.lm.told = map[int]Mode{}
		case Cancel:
			if j := slices.IndexFunc(m.lm.waiting, func(q request) bool { return q.node == k }); j >= 0 {
				m.lm.waiting = slices.Delete(m.lm.waiting, j, j+1)
				m.inbox[k] = append(m.inbox[k], message{kind: "cancelled"})
			} // else granted or refused already: the answer on its way is the reply
		default:
			t.Fatalf("node %d: action %v", k, a)
		}
	}
}

// blocks says whether node k's grant keeps q waiting.
func (lm *lockManager) blocks(k int, q request) bool {
	return k != q.node && lm.granted[k] != 0 && !lockspace.Compatible(lm.granted[k], q.mode)
}

// deadlocks says whether node k's conversion to mode would wait for a
// node whose own waiting conversion waits for k.
func (lm *lockManager) deadlocks(k int, mode Mode) bool {
	if lm.granted[k] == 0 {
		return false
	}
	q := request{k, mode}
	for _, w := range lm.waiting {
		if lm.granted[w.node] != 0 && lm.blocks(w.node, q) && lm.blocks(k, w) {
			return true
		}
	}
	return false
}

// grant grants the first waiting request while it can, then sends the
// callbacks that keep any request waiting (once each since the grants
// last changed).
func (m *model) grant() {
	for len(m.lm.waiting) > 0 && !slices.ContainsFunc(m.nodeIndexes(), func(k int) bool { return m.lm.blocks(k, m.lm.waiting[0]) }) {
		q := m.lm.waiting[0]
		m.lm.waiting = m.lm.waiting[1:]
		m.lm.told = map[int]Mode{}
		m.lm.granted[q.node] = q.mode
		m.inbox[q.node] = append(m.inbox[q.node], message{kind: "granted", mode: q.mode})
	}
	for _, q := range m.lm.waiting {
		for k := range m.nodes {
			if m.lm.blocks(k, q) && !m.lm.told[k].Covers(q.mode) {
				m.lm.told[k] = q.mode
				m.inbox[k] = append(m.inbox[k], message{kind: "blocking", mode: q.mode})
			}
		}
	}
}

func (m *model) nodeIndexes() []int {
	ks := make([]int, len(m.nodes))
	for k := range ks {
		ks[k] = k
	}
	return ks
}

// lose drops node k's lock, as dlmd's recovery does for a node cut off:
// its grant and requests go, and the reports of that lock on their way
// with them (the shell drops them: they are the old lock's).
func (m *model) lose(t *testing.T, k int) {
	m.lm.granted[k] = 0
	m.lm.waiting = slices.DeleteFunc(m.lm.waiting, func(q request) bool { return q.node == k })
	m.lm.told = map[int]Mode{}
	m.inbox[k] = slices.DeleteFunc(m.inbox[k], func(x message) bool { return x.kind != "written" })
	for op, r := range m.running[k] {
		r.orphan = true
		m.running[k][op] = r
	}
	acts, _ := m.nodes[k].Lost()
	m.seen["lost"]++
	m.apply(t, k, acts)
}

// check is the coherence every step keeps: each node's cache is within
// what its granted lock allows, and dirty data on one node means nothing
// cached on any other.
func (m *model) check(t *testing.T, step int) {
	t.Helper()
	for k, in := range m.nodes {
		for op, r := range m.running[k] {
			if !r.orphan && !m.lm.granted[k].Covers(Needs(r.a)) {
				t.Fatalf("step %d: node %d runs operation %d (%v) under a grant of %v", step, k, op, r.a, m.lm.granted[k])
			}
		}
		if in.cache&^Allowed(m.lm.granted[k]) != 0 {
			t.Fatalf("step %d: node %d caches %v under a grant of %v", step, k, in.cache, m.lm.granted[k])
		}
		for j, other := range m.nodes {
			if j != k && in.cache&Dirty != 0 && other.cache != 0 {
				t.Fatalf("step %d: node %d has dirty data while node %d caches %v", step, k, j, other.cache)
			}
		}
	}
}

// step does one random thing: a new operation (while begin allows), an
// operation's end, or a message's delivery. It reports false when there
// was nothing to do.
func (m *model) step(t *testing.T, begin bool) bool {
	t.Helper()
	type choice func()
	var cs []choice
	for k := range m.nodes {
		if begin {
			cs = append(cs, func() {
				m.nextOp++
				a := Read
				if m.r.IntN(3) == 0 {
					a = Write
				}
				m.begun++
				m.access[m.nextOp] = a
				m.apply(t, k, m.nodes[k].Begin(m.nextOp, a))
			})
			if m.r.IntN(20) == 0 {
				cs = append(cs, func() { m.lose(t, k) })
			}
		}
		if m.nodes[k].held.Covers(EX) && m.nodes[k].cache&Dirty != 0 {
			cs = append(cs, func() { m.nodes[k].Synced(); m.seen["synced"]++ })
		}
		for op, r := range m.running[k] {
			cs = append(cs, func() {
				add := Attrs | Clean
				if r.a == Write && m.r.IntN(2) == 0 {
					add = Attrs | Dirty
				}
				if r.orphan {
					add = 0 // the shell failed it
				}
				delete(m.running[k], op)
				m.ended++
				acts, err := m.nodes[k].End(op, add)
				if err != nil {
					t.Fatal(err)
				}
				m.apply(t, k, acts)
			})
		}
		if len(m.inbox[k]) > 0 {
			cs = append(cs, func() {
				msg := m.inbox[k][0]
				m.inbox[k] = m.inbox[k][1:]
				m.seen[msg.kind]++
				var acts []Action
				var err error
				switch msg.kind {
				case "granted":
					acts, err = m.nodes[k].Granted(msg.mode)
				case "blocking":
					acts = m.nodes[k].Blocking(msg.mode)
				case "cancelled":
					acts, err = m.nodes[k].Cancelled()
				case "refused":
					acts, err = m.nodes[k].Refused()
				case "written":
					acts = m.nodes[k].WrittenBack(msg.n)
				}
				if err != nil {
					t.Fatal(err)
				}
				m.apply(t, k, acts)
			})
		}
	}
	if len(cs) == 0 {
		return false
	}
	cs[m.r.IntN(len(cs))]()
	m.grant()
	return true
}

// TestModel: three nodes read and write one inode in random order over a
// lock manager that grants in order and sends callbacks, with reports
// arriving in random order between nodes. After every step each cache is
// within its node's grant and dirty data is cached nowhere else; once no
// operation starts any more, every operation runs and ends (no deadlock,
// no livelock), and the lock manager has no request left.
func TestModel(t *testing.T) {
	seen := map[string]int{}
	defer func() { t.Logf("over 200 runs: %v", seen) }()
	for seed := range uint64(200) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			m := newModel(seed, 3)
			s := 0
			for ; s < 400; s++ {
				m.step(t, m.begun < 60)
				m.check(t, s)
			}
			for ; m.step(t, false); s++ {
				m.check(t, s)
				if s > 100000 {
					t.Fatalf("no quiet after %d steps: %d operations begun, %d ended, waiting %v", s, m.begun, m.ended, m.lm.waiting)
				}
			}
			if m.ended != m.begun || len(m.lm.waiting) != 0 {
				t.Fatalf("quiet after %d steps with %d operations begun, %d ended, requests waiting %v", s, m.begun, m.ended, m.lm.waiting)
			}
			for k, v := range m.seen {
				seen[k] += v
			}
		})
	}
}
