// Package pool is lvsd's scheduler, a pure core: for each registered port,
// the backends (the UP nodes whose process listens on it, as their
// registrations in Consul's catalog say), their weights (from the nodes'
// load vectors), the connections in progress to each, and which backend a
// new connection goes to: weighted least-connections, with optional
// source-IP affinity. A node's NODEDOWN takes its backends out of every
// port at once and names the connections to end.
//
// A Pool is a plain struct, not safe for concurrent use: it starts no
// goroutine, reads no clock (every method that needs the time takes it)
// and opens no socket. The shell (daemons/lvsd/server) holds it under a
// mutex and hands the data plane a picker per port.
package pool

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
)

// Weights.
const (
	// DefaultWeight is a node's weight until its load is known.
	DefaultWeight = 100
	// MaxWeight bounds a weight.
	MaxWeight = 10000
	// MaxAffinity bounds the affinity table of one port: a client seen
	// when it is full (after expired entries are dropped) gets no
	// affinity.
	MaxAffinity = 1 << 16
)

// Backend is one node serving a port, at an address.
type Backend struct {
	Node uint32
	Addr netip.AddrPort
}

// Pool holds the ports, their backends and the nodes' weights.
type Pool struct {
	ports   map[lvsdspec.Port]*port
	weights map[uint32]int
	// down are the nodes whose NODEDOWN came and no NODEUP since: their
	// registrations, which linger in the catalog, are ignored.
	down map[uint32]bool
}

type port struct {
	opts     lvsdspec.Options
	backends map[uint32]*backend // by node
	// last is the node of the previous pick: ties go to the next node
	// after it, so that equal backends share short connections.
	last     uint32
	affinity map[netip.Addr]sticky
	// registered: the port's registrations as last set, down nodes
	// included, so that a NODEUP brings them back.
	registered []Backend
	// leaving are the backends that left the pool with connections
	// still open, until those end: a NODEDOWN of their node ends them.
	leaving map[*backend]bool
}

type backend struct {
	Backend
	active int
	// gone: the backend left the pool; connections still open to it
	// count nowhere.
	gone bool
}

type sticky struct {
	node  uint32
	until time.Time
	// open counts the client's connections in progress: the entry
	// expires only timeout after the last one ends.
	open int
}

// New returns an empty Pool.
func New() *Pool {
	return &Pool{ports: map[lvsdspec.Port]*port{}, weights: map[uint32]int{}, down: map[uint32]bool{}}
}

// SetPort registers a port, or changes its options (the backends and
// connections stay; turning affinity off forgets the clients).
func (p *Pool) SetPort(o lvsdspec.Options) {
	pt, ok := p.ports[o.Port]
	if !ok {
		pt = &port{backends: map[uint32]*backend{}, affinity: map[netip.Addr]sticky{}, leaving: map[*backend]bool{}}
		p.ports[o.Port] = pt
	}
	if !o.Affinity {
		clear(pt.affinity)
	}
	pt.opts = o
}

// RemovePort unregisters a port: its backends leave, and the backends
// whose connections should end are returned (all of them: the port is no
// longer forwarded).
func (p *Pool) RemovePort(pp lvsdspec.Port) []Backend {
	pt, ok := p.ports[pp]
	if !ok {
		return nil
	}
	delete(p.ports, pp)
	var out []Backend
	for _, b := range sorted(pt.backends) {
		b.gone = true
		out = append(out, b.Backend)
	}
	return out
}

// Ports returns the registered ports' options, by protocol and number.
func (p *Pool) Ports() []lvsdspec.Options {
	out := make([]lvsdspec.Options, 0, len(p.ports))
	for _, pt := range p.ports {
		out = append(out, pt.opts)
	}
	slices.SortFunc(out, func(a, b lvsdspec.Options) int { return comparePort(a.Port, b.Port) })
	return out
}

func comparePort(a, b lvsdspec.Port) int {
	return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Num, b.Num))
}

// SetBackends sets the port's registered backends, at most one per node
// (the first wins). A backend that is no longer registered leaves the
// pool: no new connection goes to it, and the connections in progress go
// on (its process closed its listening socket, and may still be serving
// them); a node whose NODEDOWN came is left out until its NODEUP. An
// address that changed counts as a new backend, and the old one's
// connections are returned to be ended. Unknown ports are ignored.
func (p *Pool) SetBackends(pp lvsdspec.Port, regs []Backend) (drop []Backend) {
	pt, ok := p.ports[pp]
	if !ok {
		return nil
	}
	pt.registered = slices.Clone(regs)
	want := map[uint32]Backend{}
	for _, r := range regs {
		if _, dup := want[r.Node]; !dup && r.Node != 0 && r.Addr.IsValid() && !p.down[r.Node] {
			want[r.Node] = r
		}
	}
	for _, b := range sorted(pt.backends) {
		w, keep := want[b.Node]
		if keep && w.Addr == b.Addr {
			continue
		}
		b.gone = true
		delete(pt.backends, b.Node)
		if keep {
			drop = append(drop, b.Backend)
		} else if b.active > 0 {
			pt.leaving[b] = true
		}
	}
	for n, w := range want {
		if _, ok := pt.backends[n]; !ok {
			pt.backends[n] = &backend{Backend: w}
		}
	}
	return drop
}

// NodeDown takes every backend of node out of every port and returns
// them, with those of node that left the pool earlier and still have
// connections open (its registration may go before its NODEDOWN comes):
// the node died, so the connections in progress to it are ended at once
// rather than left to hang. Its registrations are ignored until NodeUp.
func (p *Pool) NodeDown(node uint32) []Backend {
	p.down[node] = true
	var out []Backend
	for _, pp := range p.sortedPorts() {
		pt := p.ports[pp]
		var gone []Backend
		if b, ok := pt.backends[node]; ok {
			b.gone = true
			delete(pt.backends, node)
			gone = append(gone, b.Backend)
		}
		for b := range pt.leaving {
			if b.Node == node {
				delete(pt.leaving, b)
				if !slices.Contains(gone, b.Backend) {
					gone = append(gone, b.Backend)
				}
			}
		}
		slices.SortFunc(gone, func(a, b Backend) int { return a.Addr.Compare(b.Addr) })
		out = append(out, gone...)
		for c, s := range pt.affinity {
			if s.node == node {
				delete(pt.affinity, c)
			}
		}
	}
	return out
}

// NodeUp lets node's registrations count again (those set before its
// NODEDOWN included, until the next SetBackends of their port).
func (p *Pool) NodeUp(node uint32) {
	if !p.down[node] {
		return
	}
	delete(p.down, node)
	for _, pp := range p.sortedPorts() {
		pt := p.ports[pp]
		for _, r := range pt.registered {
			if r.Node == node && r.Addr.IsValid() {
				if _, ok := pt.backends[node]; !ok {
					pt.backends[node] = &backend{Backend: r}
				}
				break
			}
		}
	}
}

// SetWeight sets node's weight, clamped to 1..MaxWeight.
func (p *Pool) SetWeight(node uint32, w int) {
	p.weights[node] = min(max(w, 1), MaxWeight)
}

// ForgetWeight returns node to DefaultWeight.
func (p *Pool) ForgetWeight(node uint32) { delete(p.weights, node) }

// WeightFromLoad turns a node's load vector into its weight: its CPUs
// over (1 + its score, the runnable tasks per CPU), times 100; an idle
// 2-CPU node weighs 200, the same node with two runnable tasks per CPU
// 67. A vector without CPUs gives DefaultWeight.
func WeightFromLoad(cpus int, score float64) int {
	if cpus <= 0 || math.IsNaN(score) || score < 0 {
		return DefaultWeight
	}
	w := math.Round(100 * float64(cpus) / (1 + score))
	return int(min(max(w, 1), MaxWeight))
}

func (p *Pool) weight(node uint32) int {
	if w, ok := p.weights[node]; ok {
		return w
	}
	return DefaultWeight
}

// Conn is a connection the pool sent to a backend; End it when the
// connection ends.
type Conn struct {
	Port    lvsdspec.Port
	Backend Backend
	client  netip.Addr
	b       *backend
}

// Pick chooses the backend of a new connection from client to the port:
// with source affinity, the client's backend while it is in the pool and
// its entry has not expired; else the backend with the fewest
// connections in progress per weight ((active+1)/weight, so that at
// equal counts the heavier wins), ties going round-robin by node number.
// ok is false when the port has no backend.
func (p *Pool) Pick(now time.Time, pp lvsdspec.Port, client netip.Addr) (Conn, bool) {
	pt, ok := p.ports[pp]
	if !ok || len(pt.backends) == 0 {
		return Conn{}, false
	}
	client = client.Unmap()
	var chosen *backend
	if pt.opts.Affinity {
		if s, ok := pt.affinity[client]; ok && (s.open > 0 || now.Before(s.until)) {
			chosen = pt.backends[s.node]
		}
	}
	if chosen == nil {
		chosen = p.leastLoaded(pt)
	}
	chosen.active++
	pt.last = chosen.Node
	if pt.opts.Affinity {
		s, ok := pt.affinity[client]
		switch {
		case ok && s.node == chosen.Node:
			s.open++
			s.until = now.Add(pt.opts.AffinityTimeout)
			pt.affinity[client] = s
		case ok || len(pt.affinity) < MaxAffinity:
			// A new client, or one whose backend left or expired
			// (its old connections, if any, count nowhere now).
			pt.affinity[client] = sticky{node: chosen.Node, open: 1, until: now.Add(pt.opts.AffinityTimeout)}
		}
	}
	return Conn{Port: pp, Backend: chosen.Backend, client: client, b: chosen}, true
}

// leastLoaded returns the backend with the least (active+1)/weight; ties
// go to the first node after the last pick, in node order.
func (p *Pool) leastLoaded(pt *port) *backend {
	var best *backend
	var bestN, bestW int
	for _, b := range sortedFrom(pt.backends, pt.last) {
		n, w := b.active+1, p.weight(b.Node)
		// n/w < bestN/bestW, in integers.
		if best == nil || n*bestW < bestN*w {
			best, bestN, bestW = b, n, w
		}
	}
	return best
}

// End records that c ended at now: its backend counts one connection
// less (unless it left the pool meanwhile), and its client's affinity
// runs for the port's timeout from now. Call it once per Conn (the zero
// Conn is ignored).
func (p *Pool) End(now time.Time, c Conn) {
	if c.b == nil {
		return
	}
	if c.b.active > 0 {
		c.b.active--
	}
	pt, ok := p.ports[c.Port]
	if c.b.gone {
		if ok && c.b.active == 0 {
			delete(pt.leaving, c.b)
		}
		return
	}
	if !ok || !pt.opts.Affinity {
		return
	}
	if s, ok := pt.affinity[c.client]; ok && s.node == c.Backend.Node {
		if s.open > 0 {
			s.open--
		}
		s.until = now.Add(pt.opts.AffinityTimeout)
		pt.affinity[c.client] = s
	}
}

// Expire drops the affinity entries that ran out by now; the shell calls
// it now and then (every second), so that the tables stay small.
func (p *Pool) Expire(now time.Time) {
	for _, pt := range p.ports {
		for c, s := range pt.affinity {
			if s.open == 0 && !now.Before(s.until) {
				delete(pt.affinity, c)
			}
		}
	}
}

// PortView is a port as `ssi vip` shows it.
type PortView struct {
	Options  lvsdspec.Options
	Backends []BackendView
	// Clients is the number of clients with affinity.
	Clients int
}

// BackendView is a backend as `ssi vip` shows it.
type BackendView struct {
	Backend
	Weight int
	Active int
}

// View returns the ports and their backends, in order.
func (p *Pool) View() []PortView {
	out := make([]PortView, 0, len(p.ports))
	for _, pp := range p.sortedPorts() {
		pt := p.ports[pp]
		v := PortView{Options: pt.opts, Clients: len(pt.affinity)}
		for _, b := range sorted(pt.backends) {
			v.Backends = append(v.Backends, BackendView{Backend: b.Backend, Weight: p.weight(b.Node), Active: b.active})
		}
		out = append(out, v)
	}
	return out
}

// Backends returns the port's backends, by node.
func (p *Pool) Backends(pp lvsdspec.Port) []Backend {
	pt, ok := p.ports[pp]
	if !ok {
		return nil
	}
	var out []Backend
	for _, b := range sorted(pt.backends) {
		out = append(out, b.Backend)
	}
	return out
}

func (p *Pool) sortedPorts() []lvsdspec.Port {
	out := make([]lvsdspec.Port, 0, len(p.ports))
	for pp := range p.ports {
		out = append(out, pp)
	}
	slices.SortFunc(out, comparePort)
	return out
}

// sorted returns the backends by node number.
func sorted(m map[uint32]*backend) []*backend {
	out := make([]*backend, 0, len(m))
	for _, b := range m {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b *backend) int { return cmp.Compare(a.Node, b.Node) })
	return out
}

// sortedFrom returns the backends in node order starting after node last
// and wrapping around.
func sortedFrom(m map[uint32]*backend, last uint32) []*backend {
	all := sorted(m)
	i, _ := slices.BinarySearchFunc(all, last+1, func(b *backend, n uint32) int { return cmp.Compare(b.Node, n) })
	return append(all[i:len(all):len(all)], all[:i]...)
}
