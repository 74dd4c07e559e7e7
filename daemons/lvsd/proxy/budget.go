package proxy

import (
	"net/netip"
	"sync"
)

// Limits size a Budget.
type Limits struct {
	// Units bounds the TCP connections and UDP flows of all the proxies
	// sharing the budget, together.
	Units int
	// Flows bounds the UDP flows among them: datagrams are easily sent
	// from spoofed sources, and each new source opens a flow, so flows may
	// never take every unit from the TCP connections.
	Flows int
	// FlowsPerSource bounds the UDP flows of one client address (its
	// ports, over every proxy).
	FlowsPerSource int
}

// What one unit may cost: two sockets and, once a bulk stream goes by
// io.Copy's splice, a pipe each way (six descriptors); two goroutine
// stacks, the connection's structures, a read buffer each way while a
// message is in flight, and its share of the kernel's socket and pipe
// buffers, which the unit's cgroup is charged for (counted at 64 KiB).
const (
	fdsPerUnit    = 6
	kibPerUnit    = 64
	flowsShare    = 4 // flows may take a quarter of the units
	perSourceFlow = 64
)

// DefaultLimits are BudgetFor lvsd's unit (LimitNOFILE 65536, MemoryMax
// 512 MiB): 4096 units, 1024 of them UDP flows, 64 flows per source.
var DefaultLimits = BudgetFor(65536, 512)

// BudgetFor sizes the budget of a daemon allowed nofile descriptors and
// memoryMiB of memory: what the proxies may hold at most is half of
// each, the rest left to the daemon's other work.
func BudgetFor(nofile, memoryMiB int) Limits {
	units := max(1, min(nofile/2/fdsPerUnit, memoryMiB*1024/2/kibPerUnit))
	return Limits{Units: units, Flows: max(1, units/flowsShare), FlowsPerSource: min(perSourceFlow, max(1, units/flowsShare))}
}

// Budget is the one bound of the connections and flows of every proxy of
// a daemon: each TCP connection and each UDP flow takes a unit while it
// lasts, whichever proxy it is of. It is safe for concurrent use.
type Budget struct {
	l Limits

	mu       sync.Mutex
	units    int
	flows    int
	bySource map[netip.Addr]int
}

// NewBudget returns a budget of l; a limit that is not positive is
// DefaultLimits'.
func NewBudget(l Limits) *Budget {
	if l.Units <= 0 {
		l.Units = DefaultLimits.Units
	}
	if l.Flows <= 0 {
		l.Flows = min(DefaultLimits.Flows, l.Units)
	}
	if l.FlowsPerSource <= 0 {
		l.FlowsPerSource = min(DefaultLimits.FlowsPerSource, l.Flows)
	}
	return &Budget{l: l, bySource: map[netip.Addr]int{}}
}

// Limits are the budget's limits.
func (b *Budget) Limits() Limits { return b.l }

// Used returns the units taken and how many of them are UDP flows.
func (b *Budget) Used() (units, flows int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.units, b.flows
}

// takeConn takes a unit for a TCP connection; false when none is left.
func (b *Budget) takeConn() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.units >= b.l.Units {
		return false
	}
	b.units++
	return true
}

// endConn gives back the unit of a TCP connection.
func (b *Budget) endConn() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.units--
}

// takeFlow takes a unit for a UDP flow of client address src; false when
// no unit, no flow or none of src's is left.
func (b *Budget) takeFlow(src netip.Addr) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.units >= b.l.Units || b.flows >= b.l.Flows || b.bySource[src] >= b.l.FlowsPerSource {
		return false
	}
	b.units++
	b.flows++
	b.bySource[src]++
	return true
}

// endFlow gives back the unit of a UDP flow of src.
func (b *Budget) endFlow(src netip.Addr) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.units--
	b.flows--
	if b.bySource[src]--; b.bySource[src] <= 0 {
		delete(b.bySource, src)
	}
}
