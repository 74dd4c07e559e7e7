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
	"github.com/openssi/openssi/internal/consul"
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
		s.Membership(n, fmt.Sprintf("node%d", n), fmt.Sprintf("10.0.0.%d", n), true)
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
	s.Membership(2, "node2", "", false)
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
		s.Membership(n, fmt.Sprintf("node%d", n), fmt.Sprintf("10.0.0.%d", n), true)
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
	s.Membership(3, "node3", "", false)
	s.Reconcile()
	if !reflect.DeepEqual(data.got[at], want[:1]) {
		t.Errorf("after node 3's NODEDOWN: %+v", data.got[at])
	}
}

// TestBackendAddressFromMembership: the director forwards a node's
// connections only to the address clmsd reports for it: a catalog entry
// (which the node token shared with user openssi may register) pointing
// at an outside host, a loopback, the VIP or any other address is
// ignored, and so is a member whose reported address is itself no
// backend's (the VIP, loopback, unspecified, multicast).
func TestBackendAddressFromMembership(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		member   string // node 2's address as clmsd reports it
		entry    string // what node 2's catalog entry claims
		accepted bool
	}{
		{"the member's address", "10.0.0.2", "10.0.0.2", true},
		{"an outside host", "10.0.0.2", "198.51.100.7", false},
		{"another member's address", "10.0.0.2", "10.0.0.3", false},
		{"loopback", "10.0.0.2", "127.0.0.1", false},
		{"the VIP", "10.0.0.2", "10.0.0.100", false},
		{"unspecified", "10.0.0.2", "0.0.0.0", false},
		{"reported loopback", "127.0.0.1", "127.0.0.1", false},
		{"reported VIP", "10.0.0.100", "10.0.0.100", false},
		{"reported unspecified", "0.0.0.0", "0.0.0.0", false},
		{"reported multicast", "224.0.0.1", "224.0.0.1", false},
		{"reported broadcast", "255.255.255.255", "255.255.255.255", false},
		{"no address reported", "", "10.0.0.2", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := &lvsdfake.Data{}
			s := newServer(t, &lvsdfake.VIPs{Node: 1}, data)
			s.Membership(1, "node1", "10.0.0.1", true)
			s.Membership(2, "node2", tc.member, true)
			if err := s.StartDirector(ctx); err != nil {
				t.Fatal(err)
			}
			s.SetRegistrations(http, []*api.ServiceEntry{entry("node2", 2, tc.entry, http)})
			b, _, ok := data.Pick(netip.MustParseAddrPort("10.0.0.100:80"), netip.MustParseAddrPort("192.0.2.1:1"))
			if ok != tc.accepted {
				t.Errorf("entry %s for member %q: picked %v %v, want accepted %v", tc.entry, tc.member, b, ok, tc.accepted)
			}
		})
	}
}

// TestLoopbackBackendsOnLoopbackCluster: a cluster whose own addresses
// are loopback (test clusters on one host) may forward to loopback.
func TestLoopbackBackendsOnLoopbackCluster(t *testing.T) {
	data := &lvsdfake.Data{}
	s := server.New(server.Config{
		Self: 1, Addr: netip.MustParseAddr("127.9.9.1"),
		VIPs: []server.VIP{{Interface: "eth0", Prefix: vip}}, Ports: []lvsdspec.Options{{Port: http}},
		Announce: []time.Duration{}, Data: data, VIP: &lvsdfake.VIPs{Node: 1}, Log: quiet(),
	})
	s.Membership(2, "node2", "127.9.9.2", true)
	if err := s.StartDirector(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.SetRegistrations(http, []*api.ServiceEntry{entry("node2", 2, "127.9.9.2", http)})
	if b, _, ok := data.Pick(netip.MustParseAddrPort("10.0.0.100:80"), netip.MustParseAddrPort("192.0.2.1:1")); !ok || b != netip.MustParseAddrPort("127.9.9.2:80") {
		t.Errorf("picked %v %v", b, ok)
	}
}

func kvEntry(p lvsdspec.Port, created uint64) consul.Entry {
	return consul.Entry{Key: lvsdspec.KVPorts + p.Key(), Value: []byte("{}"), CreateIndex: created, ModifyIndex: created}
}

// TestKVPortsCapped: the ports of Consul KV (which the node token may
// write without bound) come on top of openssi.yaml's up to
// lvsdspec.MaxPorts in all, the oldest kept.
func TestKVPortsCapped(t *testing.T) {
	s := newServer(t, &lvsdfake.VIPs{Node: 1}, &lvsdfake.Data{})
	var ents []consul.Entry
	for i := range lvsdspec.MaxPorts + 50 {
		// Created newest first, so that the cap must look at the index.
		ents = append(ents, kvEntry(lvsdspec.Port{Proto: "tcp", Num: uint16(1000 + i)}, uint64(10_000-i)))
	}
	s.SetKVPorts(ents)
	ports, fromConfig := s.Ports()
	if len(ports) != lvsdspec.MaxPorts {
		t.Fatalf("%d ports registered, want %d", len(ports), lvsdspec.MaxPorts)
	}
	if !fromConfig[http] || !fromConfig[dns] {
		t.Errorf("openssi.yaml's ports left out: %v", fromConfig)
	}
	for _, o := range ports {
		if !fromConfig[o.Port] && o.Port.Num < 1000+50+2 {
			t.Errorf("%s kept, one of the newest", o.Port)
		}
	}
}

// countingData counts the data plane's Serve and Stop calls.
type countingData struct {
	lvsdfake.Data
	mu           sync.Mutex
	serves, stop int
}

func (c *countingData) Serve(addr netip.AddrPort, o lvsdspec.Options, pick server.Picker) error {
	c.mu.Lock()
	c.serves++
	c.mu.Unlock()
	return c.Data.Serve(addr, o, pick)
}

func (c *countingData) Stop(addr netip.AddrPort, proto string) error {
	c.mu.Lock()
	c.stop++
	c.mu.Unlock()
	return c.Data.Stop(addr, proto)
}

// TestOneProtocolPerPort: tcp/N and udp/N registered together (two
// nodes' ssi vip port add racing) keep the older one, openssi.yaml's
// first, and the director serves it steadily instead of stopping and
// serving the number in turn on every reconcile.
func TestOneProtocolPerPort(t *testing.T) {
	data := &countingData{}
	s := server.New(server.Config{
		Self: 1, Addr: netip.MustParseAddr("10.0.0.1"),
		VIPs: []server.VIP{{Interface: "eth0", Prefix: vip}}, Ports: []lvsdspec.Options{{Port: dns}},
		Announce: []time.Duration{}, Data: data, VIP: &lvsdfake.VIPs{Node: 1}, Log: quiet(),
	})
	s.SetKVPorts([]consul.Entry{
		kvEntry(lvsdspec.Port{Proto: "udp", Num: 8080}, 9), // the newer: dropped
		kvEntry(lvsdspec.Port{Proto: "tcp", Num: 8080}, 5),
		kvEntry(lvsdspec.Port{Proto: "tcp", Num: 53}, 1), // openssi.yaml has udp/53
	})
	ports, _ := s.Ports()
	want := []lvsdspec.Options{{Port: lvsdspec.Port{Proto: "tcp", Num: 8080}}, {Port: dns}}
	if !reflect.DeepEqual(ports, want) {
		t.Errorf("ports %+v, want %+v", ports, want)
	}
	if err := s.StartDirector(context.Background()); err != nil {
		t.Fatal(err)
	}
	data.mu.Lock()
	serves := data.serves
	data.mu.Unlock()
	for range 20 {
		s.Reconcile()
	}
	data.mu.Lock()
	defer data.mu.Unlock()
	if data.serves != serves || data.stop != 0 {
		t.Errorf("the director flaps: %d serves then %d more, %d stops", serves, data.serves-serves, data.stop)
	}
}

// TestListeningWatchRetried: a failed check of the listening sockets
// does not end the watch: it is tried again, the last answer holds for
// server.KeepListening failures in a row (then the node leaves every
// pool), the failure is reported to Health once, and a check that works
// again brings the node back and the health with it.
func TestListeningWatchRetried(t *testing.T) {
	var (
		mu      sync.Mutex
		healths []string
		calls   int
		seen    [][]lvsdspec.Port // what Status says at each call
	)
	const fails = server.KeepListening + 2
	ctx, cancel := context.WithCancel(context.Background())
	var s *server.Server
	watch := func(ctx context.Context, _ func() []lvsdspec.Options, _ time.Duration, changed func(map[lvsdspec.Port]bool)) error {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		seen = append(seen, s.Status().Listening)
		switch {
		case n == 1:
			changed(map[lvsdspec.Port]bool{http: true})
			return errors.New("netlink: operation not permitted")
		case n <= fails:
			return errors.New("netlink: operation not permitted")
		}
		changed(map[lvsdspec.Port]bool{http: true})
		cancel()
		<-ctx.Done()
		return nil
	}
	s = server.New(server.Config{
		Self: 1, Addr: netip.MustParseAddr("10.0.0.1"), Ports: []lvsdspec.Options{{Port: http}},
		WatchEvery: time.Microsecond, Watch: watch, Data: &lvsdfake.Data{}, VIP: &lvsdfake.VIPs{Node: 1}, Log: quiet(),
		Health: func(err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				healths = append(healths, "failing")
			} else {
				healths = append(healths, "ok")
			}
		},
	})
	s.WatchListening(ctx)
	mu.Lock()
	defer mu.Unlock()
	if calls != fails+1 {
		t.Fatalf("the watch ran %d times, want %d", calls, fails+1)
	}
	if want := []string{"failing", "ok"}; !reflect.DeepEqual(healths, want) {
		t.Errorf("health %v, want %v", healths, want)
	}
	for i, l := range seen[1:] {
		// seen[i+1] is what held after i+1 failures in a row.
		kept := i+1 <= server.KeepListening
		if got := len(l) == 1; got != kept {
			t.Errorf("after %d failures: listening %v, want kept %v", i+1, l, kept)
		}
	}
	if l := s.Status().Listening; !reflect.DeepEqual(l, []lvsdspec.Port{http}) {
		t.Errorf("after the watch works again: listening %v", l)
	}
}

// orderVIPs and orderData log, in one list, the VIP and data plane
// changes; cancelOnAdd, when set, is called by the first Add.
type orderVIPs struct {
	lvsdfake.VIPs
	log         *[]string
	cancelOnAdd func()
}

func (o *orderVIPs) Add(ifname string, p netip.Prefix) error {
	*o.log = append(*o.log, "add "+p.String())
	if o.cancelOnAdd != nil {
		o.cancelOnAdd()
		o.cancelOnAdd = nil
	}
	return o.VIPs.Add(ifname, p)
}

func (o *orderVIPs) Remove(ifname string, p netip.Prefix) error {
	*o.log = append(*o.log, "remove "+p.String())
	return o.VIPs.Remove(ifname, p)
}

type orderData struct {
	lvsdfake.Data
	log *[]string
}

func (o *orderData) Stop(addr netip.AddrPort, proto string) error {
	*o.log = append(*o.log, "stop "+proto+" "+addr.String())
	return o.Data.Stop(addr, proto)
}

func newOrderServer(log *[]string) (*server.Server, *orderVIPs, *orderData) {
	vips := &orderVIPs{VIPs: lvsdfake.VIPs{Node: 1}, log: log}
	data := &orderData{log: log}
	s := server.New(server.Config{
		Self: 1, Addr: netip.MustParseAddr("10.0.0.1"),
		VIPs: []server.VIP{{Interface: "eth0", Prefix: vip}}, Ports: []lvsdspec.Options{{Port: http}},
		Announce: []time.Duration{}, Data: data, VIP: vips, Log: quiet(),
	})
	return s, vips, data
}

// TestStartAfterItsStop: a Start whose context ended (the Elector
// stopped the role, the lock lost) takes nothing, and a Start whose
// context ends while it takes the VIPs gives them back: neither leaves a
// VIP on a node that lost the lock.
func TestStartAfterItsStop(t *testing.T) {
	t.Run("ended before", func(t *testing.T) {
		var log []string
		s, vips, data := newOrderServer(&log)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = s.StartDirector(ctx)
		if len(vips.Held()) != 0 || len(data.Serving()) != 0 || s.Status().Directing || s.DirectorActive(context.Background()) {
			t.Errorf("after a start with its context ended: VIPs %v, serving %v, log %v", vips.Held(), data.Serving(), log)
		}
	})
	t.Run("ended during", func(t *testing.T) {
		var log []string
		s, vips, data := newOrderServer(&log)
		ctx, cancel := context.WithCancel(context.Background())
		vips.cancelOnAdd = cancel
		_ = s.StartDirector(ctx)
		if len(vips.Held()) != 0 || len(data.Serving()) != 0 || s.Status().Directing || s.DirectorActive(context.Background()) {
			t.Errorf("after a start whose context ended during it: VIPs %v, serving %v, log %v", vips.Held(), data.Serving(), log)
		}
	})
}

// TestStopRemovesVIPsFirst: giving the role up removes the VIPs before
// it closes the proxies (which may take time joining connections).
func TestStopRemovesVIPsFirst(t *testing.T) {
	var log []string
	s, _, _ := newOrderServer(&log)
	ctx := context.Background()
	if err := s.StartDirector(ctx); err != nil {
		t.Fatal(err)
	}
	log = log[:0]
	if err := s.StopDirector(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []string{"remove 10.0.0.100/24", "stop tcp 10.0.0.100:80"}; !reflect.DeepEqual(log, want) {
		t.Errorf("stop did %v, want %v", log, want)
	}
}

// TestWatchGetsPortUsers: the watch of listening sockets is given each
// port's users, from openssi.yaml and from Consul KV (a name this node
// does not know left out), so that only their sockets and root's count.
func TestWatchGetsPortUsers(t *testing.T) {
	alt := lvsdspec.Port{Proto: "tcp", Num: 8080}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []lvsdspec.Options
	watch := func(ctx context.Context, want func() []lvsdspec.Options, _ time.Duration, _ func(map[lvsdspec.Port]bool)) error {
		got = want()
		cancel()
		return nil
	}
	s := server.New(server.Config{
		Self: 1, Addr: netip.MustParseAddr("10.0.0.1"), Ports: []lvsdspec.Options{{Port: http, Users: []string{"33"}, UIDs: []uint32{33}}},
		WatchEvery: time.Microsecond, Watch: watch, Data: &lvsdfake.Data{}, VIP: &lvsdfake.VIPs{Node: 1}, Log: quiet(),
	})
	s.SetKVPorts([]consul.Entry{{Key: lvsdspec.KVPorts + alt.Key(), Value: []byte(`{"users":["65534","no-such-user-here"]}`), CreateIndex: 1, ModifyIndex: 1}})
	s.WatchListening(ctx)
	want := []lvsdspec.Options{
		{Port: http, Users: []string{"33"}, UIDs: []uint32{33}},
		{Port: alt, Users: []string{"65534", "no-such-user-here"}, UIDs: []uint32{65534}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the watch wants %+v, want %+v", got, want)
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
				s.Membership(n, fmt.Sprintf("node%d", n), fmt.Sprintf("10.0.0.%d", n), true)
			}
			s.SetDirectorEntries(tc.ents)
			if st := s.Status(); st.Director != tc.want || st.Directing {
				t.Errorf("director %d (directing %v), want %d", st.Director, st.Directing, tc.want)
			}
		})
	}
}
