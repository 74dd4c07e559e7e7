package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/daemons/lvsd/lvsdfake"
	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/daemons/lvsd/pool"
	"github.com/openssi/openssi/daemons/lvsd/server"
)

var (
	vip  = netip.MustParsePrefix("10.0.0.100/24")
	http = lvsdspec.Port{Proto: "tcp", Num: 80}
	dns  = lvsdspec.Port{Proto: "udp", Num: 53}
)

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.ErrorLevel)
	return l
}

func newServer(t *testing.T, vips *lvsdfake.VIPs, data *lvsdfake.Data) *server.Server {
	t.Helper()
	return server.New(server.Config{
		Self: 1, Addr: netip.MustParseAddr("10.0.0.1"),
		VIPs:     []server.VIP{{Interface: "eth0", Prefix: vip}},
		Ports:    []lvsdspec.Options{{Port: http}, {Port: dns}},
		Announce: []time.Duration{},
		Data:     data, VIP: vips, Log: quiet(),
	})
}

func entry(consulNode string, node int, addr string, p lvsdspec.Port) *api.ServiceEntry {
	return &api.ServiceEntry{
		Node:    &api.Node{Node: consulNode},
		Service: &api.AgentService{ID: p.Service(), Service: p.Service(), Address: addr, Port: int(p.Num), Meta: map[string]string{"node": strconv.Itoa(node)}},
	}
}

// TestDirectorRole: winning the lock puts the VIP on the interface and
// serves every registered port on it; losing it stops both, and the
// Elector sees the role down only once both are.
func TestDirectorRole(t *testing.T) {
	ctx := context.Background()
	vips := &lvsdfake.VIPs{Node: 1, TL: lvsdfake.NewVIPTimeline()}
	data := &lvsdfake.Data{}
	s := newServer(t, vips, data)
	if s.DirectorActive(ctx) || len(vips.Held()) != 0 || len(data.Serving()) != 0 {
		t.Fatalf("before the lock: active %v, VIPs %v, serving %v", s.DirectorActive(ctx), vips.Held(), data.Serving())
	}
	if err := s.StartDirector(ctx); err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.100:53"), netip.MustParseAddrPort("10.0.0.100:80")}
	if !reflect.DeepEqual(vips.Held(), []netip.Prefix{vip}) || !reflect.DeepEqual(data.Serving(), want) {
		t.Errorf("director: VIPs %v, serving %v", vips.Held(), data.Serving())
	}
	if st := s.Status(); !st.Directing || st.Director != 1 {
		t.Errorf("status %+v", st)
	}
	if err := s.StopDirector(ctx); err != nil {
		t.Fatal(err)
	}
	if s.DirectorActive(ctx) || len(vips.Held()) != 0 || len(data.Serving()) != 0 {
		t.Errorf("after the stop: active %v, VIPs %v, serving %v", s.DirectorActive(ctx), vips.Held(), data.Serving())
	}
}

// TestVIPAddRetried: a VIP that could not be added keeps the role
// active (so the Elector does not think it down) and is tried again.
func TestVIPAddRetried(t *testing.T) {
	ctx := context.Background()
	fail := true
	vips := &lvsdfake.VIPs{Node: 1, Fail: func() error {
		if fail {
			return errors.New("no such device")
		}
		return nil
	}}
	data := &lvsdfake.Data{}
	s := newServer(t, vips, data)
	if err := s.StartDirector(ctx); err != nil {
		t.Fatal(err)
	}
	if len(vips.Held()) != 0 || !s.DirectorActive(ctx) {
		t.Fatalf("held %v, active %v", vips.Held(), s.DirectorActive(ctx))
	}
	fail = false
	s.Reconcile()
	if len(vips.Held()) != 1 {
		t.Errorf("not retried: %v", vips.Held())
	}
}

// TestPoolFromCatalog: the catalog's registrations become the pool, but
// only those registered on the Consul node that holds the number they
// claim; a NODEDOWN takes the node out and ends its connections.
func TestPoolFromCatalog(t *testing.T) {
	ctx := context.Background()
	data := &lvsdfake.Data{}
	s := newServer(t, &lvsdfake.VIPs{Node: 1}, data)
	for n := uint32(1); n <= 3; n++ {
		s.Membership(n, fmt.Sprintf("node%d", n), true)
	}
	if err := s.StartDirector(ctx); err != nil {
		t.Fatal(err)
	}
	s.SetRegistrations(http, []*api.ServiceEntry{
		entry("node2", 2, "10.0.0.2", http),
		entry("node3", 3, "10.0.0.3", http),
		entry("node3", 1, "10.0.0.66", http),      // node 3 claiming node 1's number: ignored
		entry("node1", 1, "10.0.0.1", dns),        // another port's entry: ignored
		entry("node1", 1, "not-an-address", http), // ignored
	})
	at := netip.MustParseAddrPort("10.0.0.100:80")
	seen := map[netip.AddrPort]int{}
	var dones []func()
	for i := range 4 {
		b, done, ok := data.Pick(at, netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 40000))
		if !ok {
			t.Fatalf("pick %d: no backend", i)
		}
		seen[b]++
		dones = append(dones, done)
	}
	if want := map[netip.AddrPort]int{netip.MustParseAddrPort("10.0.0.2:80"): 2, netip.MustParseAddrPort("10.0.0.3:80"): 2}; !reflect.DeepEqual(seen, want) {
		t.Errorf("picks %v, want %v", seen, want)
	}
	v := s.Status().Pool
	if len(v) != 2 || v[0].Options.Port != http || len(v[0].Backends) != 2 || v[0].Backends[0].Active != 2 {
		t.Errorf("pool %+v", v)
	}
	s.Membership(2, "node2", false)
	if got := data.Dropped(); !reflect.DeepEqual(got, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:80")}) {
		t.Errorf("dropped %v after node 2's NODEDOWN", got)
	}
	for _, d := range dones {
		d()
		d() // a second call changes nothing
	}
	for i := range 3 {
		b, done, ok := data.Pick(at, netip.MustParseAddrPort("192.0.2.1:1"))
		if !ok || b != netip.MustParseAddrPort("10.0.0.3:80") {
			t.Fatalf("pick %d after the NODEDOWN: %v %v", i, b, ok)
		}
		done()
	}
	if v := s.Status().Pool; v[0].Backends[0].Active != 0 {
		t.Errorf("active after every end: %+v", v[0].Backends)
	}
	// The last backend leaves the catalog: nothing to pick.
	s.SetRegistrations(http, nil)
	if _, _, ok := data.Pick(at, netip.MustParseAddrPort("192.0.2.1:1")); ok {
		t.Error("picked with no backend")
	}
}

// TestBootRemovesLeftVIPs: a director that crashed left its VIPs on the
// interface; the stop the Elector orders at boot removes them.
func TestBootRemovesLeftVIPs(t *testing.T) {
	ctx := context.Background()
	vips := &lvsdfake.VIPs{Node: 1}
	_ = vips.Add("eth0", vip) // left by the crashed run
	s := newServer(t, vips, &lvsdfake.Data{})
	s.MarkVIPsHeld()
	if !s.DirectorActive(ctx) {
		t.Fatal("the role reads inactive while a VIP may be left on the interface")
	}
	if err := s.StopDirector(ctx); err != nil {
		t.Fatal(err)
	}
	if len(vips.Held()) != 0 || s.DirectorActive(ctx) {
		t.Errorf("after the boot's stop: VIPs %v", vips.Held())
	}
}

// kernelData is a data plane that forwards in the kernel (IPVS): it is
// handed the backends instead of asking a picker.
type kernelData struct {
	lvsdfake.Data
	mu  sync.Mutex
	got map[netip.AddrPort][]pool.BackendView
	n   int
}

func (k *kernelData) SetBackends(addr netip.AddrPort, _ lvsdspec.Options, bs []pool.BackendView) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.got == nil {
		k.got = map[netip.AddrPort][]pool.BackendView{}
	}
	k.got[addr] = bs
	k.n++
}

// TestKernelDataPlaneGetsBackends: an IPVS data plane is handed each
// port's backends and weights when they change, and only then; a node
// that goes DOWN leaves them.
func TestKernelDataPlaneGetsBackends(t *testing.T) {
	ctx := context.Background()
	data := &kernelData{}
	s := server.New(server.Config{
		Self: 1, Addr: netip.MustParseAddr("10.0.0.1"),
		VIPs: []server.VIP{{Interface: "eth0", Prefix: vip}}, Ports: []lvsdspec.Options{{Port: http}},
		Announce: []time.Duration{}, Data: data, VIP: &lvsdfake.VIPs{Node: 1}, Log: quiet(),
	})
	for n := uint32(1); n <= 3; n++ {
		s.Membership(n, fmt.Sprintf("node%d", n), true)
	}
	if err := s.StartDirector(ctx); err != nil {
		t.Fatal(err)
	}
	at := netip.MustParseAddrPort("10.0.0.100:80")
	s.SetRegistrations(http, []*api.ServiceEntry{entry("node2", 2, "10.0.0.2", http), entry("node3", 3, "10.0.0.3", http)})
	s.Reconcile()
	want := []pool.BackendView{
		{Backend: pool.Backend{Node: 2, Addr: netip.MustParseAddrPort("10.0.0.2:80")}, Weight: pool.DefaultWeight},
		{Backend: pool.Backend{Node: 3, Addr: netip.MustParseAddrPort("10.0.0.3:80")}, Weight: pool.DefaultWeight},
	}
	if !reflect.DeepEqual(data.got[at], want) {
		t.Errorf("pushed %+v, want %+v", data.got[at], want)
	}
	n := data.n
	s.Reconcile()
	if data.n != n {
		t.Errorf("pushed again with nothing changed")
	}
	s.Membership(3, "node3", false)
	s.Reconcile()
	if !reflect.DeepEqual(data.got[at], want[:1]) {
		t.Errorf("after node 3's NODEDOWN: %+v", data.got[at])
	}
}

// TestDirectorFromCatalog: a node that is not the director names the
// director from the catalog's passing entries of the director's service.
// A director cut off from the cluster may leave its entry behind (its
// agent withdraws it only once it reaches the servers again, and it is
// passing again as soon as the node is back): the newest registration is
// the director, as each director registers only after it won the lock.
// The lab showed `ssi vip` naming the old director after a partition
// healed, for as long as its entry stayed.
func TestDirectorFromCatalog(t *testing.T) {
	dir := func(consulNode string, node int, index uint64) *api.ServiceEntry {
		return &api.ServiceEntry{
			Node: &api.Node{Node: consulNode},
			Service: &api.AgentService{ID: server.DirectorService, Service: server.DirectorService,
				Meta: map[string]string{"node": strconv.Itoa(node)}, CreateIndex: index, ModifyIndex: index},
		}
	}
	for _, tc := range []struct {
		name string
		ents []*api.ServiceEntry
		want uint32
	}{
		{"none", nil, 0},
		{"one", []*api.ServiceEntry{dir("node3", 3, 20)}, 3},
		{"stale first", []*api.ServiceEntry{dir("node2", 2, 10), dir("node3", 3, 20)}, 3},
		{"stale last", []*api.ServiceEntry{dir("node3", 3, 20), dir("node2", 2, 10)}, 3},
		{"newest untrusted", []*api.ServiceEntry{dir("node2", 2, 10), dir("evil", 3, 30)}, 2},
		{"no meta", []*api.ServiceEntry{dir("node2", 2, 10), {Node: &api.Node{Node: "node3"}, Service: &api.AgentService{ModifyIndex: 40}}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, &lvsdfake.VIPs{Node: 1, TL: lvsdfake.NewVIPTimeline()}, &lvsdfake.Data{})
			for n := uint32(1); n <= 3; n++ {
				s.Membership(n, fmt.Sprintf("node%d", n), true)
			}
			s.SetDirectorEntries(tc.ents)
			if st := s.Status(); st.Director != tc.want || st.Directing {
				t.Errorf("director %d (directing %v), want %d", st.Director, st.Directing, tc.want)
			}
		})
	}
}
