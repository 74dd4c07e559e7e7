package pool

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
)

var (
	t0   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	http = lvsdspec.Port{Proto: "tcp", Num: 80}
	dns  = lvsdspec.Port{Proto: "udp", Num: 53}
)

func be(node uint32) Backend {
	return Backend{Node: node, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(node)}), 80)}
}

func client(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)}) }

func newPool(o lvsdspec.Options, nodes ...uint32) *Pool {
	p := New()
	p.SetPort(o)
	var regs []Backend
	for _, n := range nodes {
		regs = append(regs, be(n))
	}
	p.SetBackends(o.Port, regs)
	return p
}

// picks opens n connections from distinct clients (kept open) and counts
// them per node.
func picks(t *testing.T, p *Pool, pp lvsdspec.Port, n int) (map[uint32]int, []Conn) {
	t.Helper()
	got := map[uint32]int{}
	var conns []Conn
	for i := range n {
		c, ok := p.Pick(t0, pp, client(i))
		if !ok {
			t.Fatalf("pick %d: no backend", i)
		}
		got[c.Backend.Node]++
		conns = append(conns, c)
	}
	return got, conns
}

// TestWeightedLeastConnections: open connections spread in proportion to
// the weights.
func TestWeightedLeastConnections(t *testing.T) {
	for _, tc := range []struct {
		name    string
		weights map[uint32]int
		n       int
		want    map[uint32]int
	}{
		{"equal", nil, 9, map[uint32]int{1: 3, 2: 3, 3: 3}},
		{"two to one", map[uint32]int{1: 200, 2: 100, 3: 100}, 8, map[uint32]int{1: 4, 2: 2, 3: 2}},
		{"one heavy", map[uint32]int{1: 300, 2: 100, 3: 100}, 10, map[uint32]int{1: 6, 2: 2, 3: 2}},
		{"weights from load", map[uint32]int{1: WeightFromLoad(4, 0), 2: WeightFromLoad(2, 1), 3: WeightFromLoad(2, 1)}, 6, map[uint32]int{1: 4, 2: 1, 3: 1}},
		{"weight clamped", map[uint32]int{1: 0, 2: -5, 3: 1}, 3, map[uint32]int{1: 1, 2: 1, 3: 1}},
	} {
		p := newPool(lvsdspec.Options{Port: http}, 1, 2, 3)
		for n, w := range tc.weights {
			p.SetWeight(n, w)
		}
		got, _ := picks(t, p, http, tc.n)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestLeastConnections: a backend whose connections ended gets the next
// ones; short connections (each ended before the next) go round the
// backends instead of all to the first.
func TestLeastConnections(t *testing.T) {
	p := newPool(lvsdspec.Options{Port: http}, 1, 2, 3)
	_, conns := picks(t, p, http, 6) // two each
	p.End(t0, conns[0])              // node 1 has one left
	p.End(t0, conns[3])              // node 1 has none
	got, _ := picks(t, p, http, 2)
	if !reflect.DeepEqual(got, map[uint32]int{1: 2}) {
		t.Errorf("after node 1's ended: %v, want both to node 1", got)
	}

	p = newPool(lvsdspec.Options{Port: http}, 1, 2, 3)
	var order []uint32
	for i := range 6 {
		c, _ := p.Pick(t0, http, client(i))
		order = append(order, c.Backend.Node)
		p.End(t0, c)
	}
	if want := []uint32{1, 2, 3, 1, 2, 3}; !reflect.DeepEqual(order, want) {
		t.Errorf("short connections went to %v, want %v", order, want)
	}
	if v := p.View(); v[0].Backends[0].Active != 0 {
		t.Errorf("active after all ended: %+v", v)
	}
}

// TestAffinity: with source affinity a client keeps its backend while it
// has connections and for the timeout after its last one; then it is
// scheduled again. Without it, the same client is spread.
func TestAffinity(t *testing.T) {
	o := lvsdspec.Options{Port: http, Affinity: true, AffinityTimeout: time.Minute}
	p := newPool(o, 1, 2, 3)
	a, _ := p.Pick(t0, http, client(1))
	for i := range 5 {
		c, _ := p.Pick(t0, http, client(1))
		if c.Backend != a.Backend {
			t.Fatalf("pick %d of the same client went to node %d, want %d", i, c.Backend.Node, a.Backend.Node)
		}
		p.End(t0, c)
	}
	p.End(t0.Add(time.Second), a)
	if c, _ := p.Pick(t0.Add(time.Second+59*time.Second), http, client(1)); c.Backend != a.Backend {
		t.Errorf("within the timeout: node %d, want %d", c.Backend.Node, a.Backend.Node)
	} else {
		p.End(t0.Add(time.Minute), c)
	}
	// Expired a minute after its last end; another client now holds
	// node 1 (the first), so client 1 is scheduled elsewhere.
	p.Expire(t0.Add(2 * time.Minute))
	if v := p.View(); v[0].Clients != 0 {
		t.Errorf("clients after expiry: %d", v[0].Clients)
	}
	p.Pick(t0.Add(2*time.Minute), http, client(2))
	if c, _ := p.Pick(t0.Add(2*time.Minute), http, client(1)); c.Backend.Node == 1 && a.Backend.Node == 1 {
		t.Errorf("expired affinity kept client 1 on node 1 beside client 2")
	}

	// IPv4-mapped IPv6 clients are the same client.
	p = newPool(o, 1, 2)
	c4, _ := p.Pick(t0, http, netip.MustParseAddr("192.0.2.1"))
	c6, _ := p.Pick(t0, http, netip.MustParseAddr("::ffff:192.0.2.1"))
	if c4.Backend != c6.Backend {
		t.Errorf("mapped client went to node %d, plain to %d", c6.Backend.Node, c4.Backend.Node)
	}

	// Without affinity: spread.
	p = newPool(lvsdspec.Options{Port: http}, 1, 2)
	x, _ := p.Pick(t0, http, client(1))
	y, _ := p.Pick(t0, http, client(1))
	if x.Backend == y.Backend {
		t.Errorf("without affinity both connections went to node %d", x.Backend.Node)
	}
}

// TestAffinityBounded: the table of one port never passes MaxAffinity;
// clients beyond it are scheduled without affinity.
func TestAffinityBounded(t *testing.T) {
	p := newPool(lvsdspec.Options{Port: http, Affinity: true, AffinityTimeout: time.Second}, 1, 2)
	for i := range MaxAffinity + 10 {
		c, _ := p.Pick(t0, http, netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		p.End(t0, c)
	}
	if n := p.View()[0].Clients; n != MaxAffinity {
		t.Errorf("%d clients remembered, want %d", n, MaxAffinity)
	}
	p.Expire(t0.Add(time.Second))
	if n := p.View()[0].Clients; n != 0 {
		t.Errorf("%d clients after expiry", n)
	}
}

// TestBackendLeavesMidStream: a backend whose registration goes (its
// process closed its listening socket) gets no new connection; the ones
// in progress go on and end without disturbing the counts of the others
// or of the same node when it comes back.
func TestBackendLeavesMidStream(t *testing.T) {
	o := lvsdspec.Options{Port: http, Affinity: true, AffinityTimeout: time.Minute}
	p := newPool(o, 1, 2)
	c1, _ := p.Pick(t0, http, client(1))
	c2, _ := p.Pick(t0, http, client(2))
	if c1.Backend.Node == c2.Backend.Node {
		t.Fatalf("both on node %d", c1.Backend.Node)
	}
	leaving := c1.Backend.Node
	staying := c2.Backend.Node
	if drop := p.SetBackends(http, []Backend{be(staying)}); drop != nil {
		t.Errorf("a backend that stopped listening: drop %v, want none (its connections go on)", drop)
	}
	for i := range 3 {
		// Client 1 had affinity to the leaving backend: it moves.
		c, ok := p.Pick(t0, http, client(1+i%2))
		if !ok || c.Backend.Node != staying {
			t.Fatalf("pick %d: node %d, %v; want %d", i, c.Backend.Node, ok, staying)
		}
	}
	p.End(t0, c1) // the connection in progress to the leaving backend ends
	// The node comes back: it starts with no connection.
	p.SetBackends(http, []Backend{be(1), be(2)})
	for _, b := range p.View()[0].Backends {
		want := map[uint32]int{leaving: 0, staying: 4}[b.Node]
		if b.Active != want {
			t.Errorf("node %d: %d active, want %d", b.Node, b.Active, want)
		}
	}

	// A backend whose address changed is a new backend: the old one's
	// connections are to be ended.
	moved := Backend{Node: 1, Addr: netip.MustParseAddrPort("10.0.9.1:80")}
	if drop := p.SetBackends(http, []Backend{moved, be(2)}); !reflect.DeepEqual(drop, []Backend{be(1)}) {
		t.Errorf("address change: drop %v, want %v", drop, []Backend{be(1)})
	}

	// The last backend leaves: no pick.
	p.SetBackends(http, nil)
	if _, ok := p.Pick(t0, http, client(3)); ok {
		t.Errorf("picked with no backend")
	}
	p.End(t0, c2) // no panic, no negative count
}

// TestNodeDown: a NODEDOWN takes the node out of every port at once and
// names its backends (their connections are ended); its lingering
// registrations are ignored until its NODEUP.
func TestNodeDown(t *testing.T) {
	p := New()
	p.SetPort(lvsdspec.Options{Port: http, Affinity: true, AffinityTimeout: time.Minute})
	p.SetPort(lvsdspec.Options{Port: dns})
	p.SetBackends(http, []Backend{be(1), be(2)})
	dnsBe := Backend{Node: 2, Addr: netip.MustParseAddrPort("10.0.0.2:53")}
	p.SetBackends(dns, []Backend{dnsBe})
	c, _ := p.Pick(t0, http, client(1))
	if c.Backend.Node != 1 {
		t.Fatalf("first pick node %d", c.Backend.Node)
	}
	if drop := p.NodeDown(2); !reflect.DeepEqual(drop, []Backend{be(2), dnsBe}) {
		t.Errorf("NodeDown(2) = %v", drop)
	}
	p.SetBackends(http, []Backend{be(1), be(2)}) // the catalog still lists it
	for i := range 4 {
		if c, _ := p.Pick(t0, http, client(10+i)); c.Backend.Node != 1 {
			t.Fatalf("pick %d went to node %d after its NODEDOWN", i, c.Backend.Node)
		}
	}
	if _, ok := p.Pick(t0, dns, client(1)); ok {
		t.Errorf("dns picked with its only node down")
	}
	// The client whose backend dies is scheduled anew.
	if drop := p.NodeDown(1); len(drop) != 1 {
		t.Errorf("NodeDown(1) = %v", drop)
	}
	p.End(t0, c)
	p.NodeUp(2)
	if got := p.Backends(http); !reflect.DeepEqual(got, []Backend{be(2)}) {
		t.Errorf("after NODEUP of 2: %v", got)
	}
	if got := p.Backends(dns); !reflect.DeepEqual(got, []Backend{dnsBe}) {
		t.Errorf("dns after NODEUP of 2: %v", got)
	}
	if c, _ := p.Pick(t0, http, client(1)); c.Backend.Node != 2 {
		t.Errorf("client 1 after its node died: node %d", c.Backend.Node)
	}
}

// TestNodeDownAfterLeaving: a node whose registration went first (its
// agent's health failed) and whose NODEDOWN came next still has its
// connections in progress ended; once they ended on their own, there is
// nothing to end.
func TestNodeDownAfterLeaving(t *testing.T) {
	p := newPool(lvsdspec.Options{Port: http}, 1, 2)
	c1, _ := p.Pick(t0, http, client(1))
	c2, _ := p.Pick(t0, http, client(2))
	p.SetBackends(http, nil)
	if drop := p.NodeDown(c1.Backend.Node); !reflect.DeepEqual(drop, []Backend{c1.Backend}) {
		t.Errorf("NodeDown(%d) after it left = %v, want its backend", c1.Backend.Node, drop)
	}
	p.End(t0, c2)
	if drop := p.NodeDown(c2.Backend.Node); drop != nil {
		t.Errorf("NodeDown(%d) after its connections ended = %v, want none", c2.Backend.Node, drop)
	}
	p.End(t0, c1)
}

// TestPorts: ports are independent; removing one names its backends.
func TestPorts(t *testing.T) {
	p := New()
	p.SetPort(lvsdspec.Options{Port: http})
	p.SetPort(lvsdspec.Options{Port: dns})
	p.SetBackends(dns, []Backend{be(3)})
	if _, ok := p.Pick(t0, http, client(1)); ok {
		t.Error("http picked without backends")
	}
	other := lvsdspec.Port{Proto: "tcp", Num: 81}
	if _, ok := p.Pick(t0, other, client(1)); ok {
		t.Error("an unregistered port picked")
	}
	if p.SetBackends(other, []Backend{be(1)}) != nil || len(p.Ports()) != 2 {
		t.Error("backends of an unregistered port kept")
	}
	if got := fmt.Sprint(p.Ports()[0].Port, p.Ports()[1].Port); got != "tcp/80 udp/53" {
		t.Errorf("Ports() = %s", got)
	}
	if drop := p.RemovePort(dns); !reflect.DeepEqual(drop, []Backend{be(3)}) {
		t.Errorf("RemovePort = %v", drop)
	}
	// Duplicates and invalid registrations: one per node, the first.
	p.SetBackends(http, []Backend{be(1), {Node: 1, Addr: netip.MustParseAddrPort("10.9.9.9:80")}, {Node: 0, Addr: be(2).Addr}, {Node: 4}})
	if got := p.Backends(http); !reflect.DeepEqual(got, []Backend{be(1)}) {
		t.Errorf("Backends = %v", got)
	}
}

func TestWeightFromLoad(t *testing.T) {
	for _, tc := range []struct {
		cpus  int
		score float64
		want  int
	}{
		{2, 0, 200}, {2, 2, 67}, {1, 0, 100}, {0, 0, DefaultWeight}, {4, -1, DefaultWeight}, {1, 1e9, 1}, {1000, 0, MaxWeight},
	} {
		if got := WeightFromLoad(tc.cpus, tc.score); got != tc.want {
			t.Errorf("WeightFromLoad(%d, %v) = %d, want %d", tc.cpus, tc.score, got, tc.want)
		}
	}
}
