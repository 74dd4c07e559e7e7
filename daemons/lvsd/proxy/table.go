package proxy

import (
	"net/netip"
	"sync"
)

// table holds the TCP connections in progress: the backend of each and how
// to abort it. Each holds a unit of budget while it is in the table. The backend is recorded under the same
// lock the Pick is made under, so a DropBackend either comes before the
// Pick (and the pool no longer offers the backend) or sees the connection.
type table struct {
	mu     sync.Mutex
	budget *Budget
	next   uint64
	conns  map[uint64]entry
	closed bool
}

type entry struct {
	backend netip.AddrPort // invalid until picked
	abort   func()
}

func newTable(b *Budget) *table {
	return &table{budget: b, conns: map[uint64]entry{}}
}

// add records a new connection that abort ends; ok is false when the
// budget is spent or the table closed.
func (t *table) add(abort func()) (id uint64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || !t.budget.takeConn() {
		return 0, false
	}
	t.next++
	t.conns[t.next] = entry{abort: abort}
	return t.next, true
}

// pick asks p for the backend of connection id and records it. ok is false
// when p has none or the connection was aborted meanwhile (then done, if
// any, has already been called).
func (t *table) pick(id uint64, p Picker, client netip.AddrPort) (backend netip.AddrPort, done func(), ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, live := t.conns[id]
	if !live {
		return netip.AddrPort{}, nil, false
	}
	backend, done, ok = p.Pick(client)
	if !ok {
		return netip.AddrPort{}, nil, false
	}
	e.backend = backend
	t.conns[id] = e
	return backend, done, true
}

// unpick forgets the backend of connection id (its dial failed).
func (t *table) unpick(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.conns[id]; ok {
		e.backend = netip.AddrPort{}
		t.conns[id] = e
	}
}

// remove forgets connection id; it reports whether it was there.
func (t *table) remove(id uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.conns[id]
	if ok {
		delete(t.conns, id)
		t.budget.endConn()
	}
	return ok
}

// drop removes the connections to backend and returns their aborts, for
// the caller to run without the lock.
func (t *table) drop(backend netip.AddrPort) []func() {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []func()
	for id, e := range t.conns {
		if e.backend == backend {
			out = append(out, e.abort)
			delete(t.conns, id)
			t.budget.endConn()
		}
	}
	return out
}

// close refuses new connections and returns the aborts of all of them.
func (t *table) close() []func() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	out := make([]func(), 0, len(t.conns))
	for id, e := range t.conns {
		out = append(out, e.abort)
		delete(t.conns, id)
		t.budget.endConn()
	}
	return out
}

func (t *table) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}
