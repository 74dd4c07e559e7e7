package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/cmd/ssi/cli"
	"github.com/openssi/openssi/daemons/lvsd/lvsdfake"
	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/daemons/lvsd/server"
	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/localapi"
	"github.com/openssi/openssi/internal/nodetest"
)

// lvsNode is one node's lvsd, run in this process against the node's
// real Consul agent, clmsd and dlmd, with fakes for the VIPs (a timeline
// shared by the nodes, which records any overlap), the data plane and
// the socket watch (the test says what listens; the listeners are real,
// on the node's own loopback address, for the agent's TCP check).
type lvsNode struct {
	num    uint32
	n      *nodetest.Node
	srv    *server.Server
	vips   *lvsdfake.VIPs
	data   *lvsdfake.Data
	listen *lvsdfake.Listening
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

var lvsVIP = netip.MustParsePrefix("10.99.0.100/24")

func startLvs(t *testing.T, n *nodetest.Node, num uint32, tl *lvsdfake.VIPTimeline, ports []lvsdspec.Options) *lvsNode {
	t.Helper()
	log := logrus.New()
	log.SetLevel(logrus.InfoLevel)
	log.SetOutput(testWriter{t})
	k := &lvsNode{num: num, n: n, vips: &lvsdfake.VIPs{Node: num, TL: tl}, data: &lvsdfake.Data{}, listen: &lvsdfake.Listening{}, done: make(chan error, 1)}
	k.srv = server.New(server.Config{
		Self: num, Addr: netip.MustParseAddr(n.Agent.IP),
		VIPs:  []server.VIP{{Interface: "eth0", Prefix: lvsVIP}},
		Ports: ports, StopTimeout: 500 * time.Millisecond, Retry: 200 * time.Millisecond,
		Consul: n.Agent.Client(), KV: consul.NewKV(n.Agent.Client()),
		Session: func(ctx context.Context) (*dlm.Client, error) { return dlm.New(ctx, dlm.WithSocket(n.DlmdSocket())) },
		Data:    k.data, VIP: k.vips, Watch: k.listen.Watch,
		Log: log.WithField("node", num),
	})
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	// Membership as main.go follows it: the view, then its events.
	members, err := n.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := members.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range v.Nodes {
		k.srv.Membership(uint32(m.Number), m.Name, m.Address, m.State == cluster.Up)
	}
	go func() {
		w := members.Watch(ctx, v.Epoch)
		for w.Next() {
			e := w.Event()
			k.srv.Membership(uint32(e.Node.Number), e.Node.Name, e.Node.Address, e.Type == cluster.NodeUp)
		}
		members.Close()
	}()
	ln, _, err := localapi.Listen(n.DaemonSocket(lvsdspec.Name), "")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(localapi.Credentials()))
	server.NewAPI(k.srv).Register(g)
	go func() { _ = g.Serve(ln) }()
	go func() { k.done <- k.srv.Run(ctx, nil) }()
	t.Cleanup(func() {
		k.stop(t)
		g.Stop()
	})
	return k
}

// ssi runs ssi on node k and returns its exit code and output.
func (k *lvsNode) ssi(args ...string) (int, string) {
	var out bytes.Buffer
	code := cli.Main(append([]string{"--run-dir", k.n.RunDir}, args...), &out, &out)
	return code, out.String()
}

func (k *lvsNode) stop(t *testing.T) {
	k.once.Do(func() {
		k.cancel()
		select {
		case err := <-k.done:
			if err != nil {
				t.Errorf("node %d: lvsd: %v", k.num, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("node %d: lvsd did not stop", k.num)
		}
	})
}

// director waits until exactly one node (other than not) holds the VIP.
func director(t *testing.T, ctx context.Context, tl *lvsdfake.VIPTimeline, nodes map[uint32]*lvsNode, not uint32) *lvsNode {
	t.Helper()
	for {
		if h := tl.Holders(lvsVIP); len(h) == 1 && h[0] != not {
			return nodes[h[0]]
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no single director: holders %v", tl.Holders(lvsVIP))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// poolOf returns the nodes in the director's pool of port p.
func poolOf(k *lvsNode, p lvsdspec.Port) []uint32 {
	var out []uint32
	for _, pv := range k.srv.Status().Pool {
		if pv.Options.Port == p {
			for _, b := range pv.Backends {
				out = append(out, b.Node)
			}
		}
	}
	return out
}

// waitPool waits until the director's pool of p is want and returns how
// long it took.
func waitPool(t *testing.T, ctx context.Context, k *lvsNode, p lvsdspec.Port, want []uint32) time.Duration {
	t.Helper()
	start := time.Now()
	for !slices.Equal(poolOf(k, p), want) {
		select {
		case <-ctx.Done():
			t.Fatalf("pool of %s on node %d: %v, want %v", p, k.num, poolOf(k, p), want)
		case <-time.After(5 * time.Millisecond):
		}
	}
	return time.Since(start)
}

// TestLvs: three nodes with real Consul, clmsd and dlmd, each with lvsd
// in this process. One node holds the VIP; a node that starts listening
// on a registered port is in the director's pool within a second, and
// out of it within a second of closing; the director's SIGTERM hands the
// VIP to another node at once; a node that dies leaves the pool at its
// NODEDOWN and its connections are ended. No two nodes ever hold the
// VIP at once.
func TestLvs(t *testing.T) {
	c := startDlm(t, 3, 0)
	ctx := ctxFor(t, 150*time.Second)
	byNum := map[uint32]*nodetest.Node{}
	var nums []uint32
	for _, n := range c.Nodes {
		num := uint32(numberOf(t, ctx, n))
		byNum[num] = n
		nums = append(nums, num)
	}
	slices.Sort(nums)
	// A free port, the same on every node's loopback address.
	l0, err := net.Listen("tcp", byNum[nums[0]].Agent.IP+":0")
	if err != nil {
		t.Fatal(err)
	}
	num := uint16(l0.Addr().(*net.TCPAddr).Port)
	l0.Close()
	web := lvsdspec.Port{Proto: "tcp", Num: num}

	tl := lvsdfake.NewVIPTimeline()
	nodes := map[uint32]*lvsNode{}
	for _, n := range nums {
		nodes[n] = startLvs(t, byNum[n], n, tl, []lvsdspec.Options{{Port: web}})
	}
	defer func() {
		if o := tl.Overlaps(); len(o) > 0 {
			t.Errorf("two nodes held the VIP at once: %v\nevents: %v", o, tl.Events())
		}
	}()
	d := director(t, ctx, tl, nodes, 0)
	t.Logf("director: node %d", d.num)
	if len(d.data.Serving()) != 1 {
		t.Errorf("director serves %v", d.data.Serving())
	}
	for d.vips.Announced() == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the director never announced the VIP")
		case <-time.After(5 * time.Millisecond):
		}
	}

	// Backends: the two other nodes start listening, one after the other.
	var others []*lvsNode
	for _, n := range nums {
		if n != d.num {
			others = append(others, nodes[n])
		}
	}
	listeners := map[uint32]net.Listener{}
	serve := func(k *lvsNode) {
		l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", k.n.Agent.IP, num))
		if err != nil {
			t.Fatal(err)
		}
		listeners[k.num] = l
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		k.listen.Set(web, true)
	}
	unserve := func(k *lvsNode) {
		listeners[k.num].Close()
		k.listen.Set(web, false)
	}
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	a, b := others[0], others[1]
	serve(a)
	took := waitPool(t, ctx, d, web, []uint32{a.num})
	t.Logf("listen() on node %d to its place in the pool: %v", a.num, took)
	if took > time.Second {
		t.Errorf("node %d joined the pool after %v, want within 1s", a.num, took)
	}
	serve(b)
	waitPool(t, ctx, d, web, []uint32{min(a.num, b.num), max(a.num, b.num)})
	// Every node sees the same pool (ready to take over).
	for _, k := range others {
		waitPool(t, ctx, k, web, []uint32{min(a.num, b.num), max(a.num, b.num)})
	}
	// New connections are shared.
	vipAddr := netip.AddrPortFrom(lvsVIP.Addr(), num)
	got := map[netip.AddrPort]int{}
	for i := range 4 {
		be, done, ok := d.data.Pick(vipAddr, netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 5000))
		if !ok {
			t.Fatalf("pick %d: no backend", i)
		}
		got[be]++
		done()
	}
	if len(got) != 2 {
		t.Errorf("4 connections went to %v, want both backends", got)
	}

	// ssi vip on another node names the director and the pool.
	for {
		code, out := a.ssi("vip")
		if code == 0 && strings.Contains(out, fmt.Sprintf("director: node %d\n", d.num)) && strings.Contains(out, "VIP: 10.99.0.100/24 on eth0") &&
			strings.Contains(out, web.String()) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ssi vip on node %d: exit %d:\n%s", a.num, code, out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// ssi vip port add: every node follows the port; remove: gone.
	extra := lvsdspec.Port{Proto: "tcp", Num: num + 1}
	if code, out := a.ssi("vip", "port", "add", extra.String(), "--affinity", "source"); code != 0 {
		t.Fatalf("ssi vip port add: exit %d: %s", code, out)
	}
	if code, out := a.ssi("vip", "port", "add", fmt.Sprintf("udp/%d", num)); code == 0 || !strings.Contains(out, "one protocol per port") {
		t.Errorf("ssi vip port add of the other protocol: exit %d: %s", code, out)
	}
	hasPort := func(k *lvsNode, p lvsdspec.Port) bool {
		for _, pv := range k.srv.Status().Pool {
			if pv.Options.Port == p {
				return true
			}
		}
		return false
	}
	for _, k := range nodes {
		for !hasPort(k, extra) {
			select {
			case <-ctx.Done():
				t.Fatalf("node %d never registered %s", k.num, extra)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	if len(d.data.Serving()) != 2 {
		t.Errorf("director serves %v, want the added port too", d.data.Serving())
	}
	if code, out := a.ssi("vip", "port", "remove", extra.String()); code != 0 {
		t.Fatalf("ssi vip port remove: exit %d: %s", code, out)
	}
	for hasPort(d, extra) {
		select {
		case <-ctx.Done():
			t.Fatalf("%s still registered on the director", extra)
		case <-time.After(5 * time.Millisecond):
		}
	}

	// Closing: out of the pool within a second.
	unserve(b)
	took = waitPool(t, ctx, d, web, []uint32{a.num})
	t.Logf("close() on node %d to its leaving the pool: %v", b.num, took)
	if took > time.Second {
		t.Errorf("node %d left the pool after %v, want within 1s", b.num, took)
	}
	serve(b)
	waitPool(t, ctx, d, web, []uint32{min(a.num, b.num), max(a.num, b.num)})

	// The director stops (SIGTERM): the VIP moves at once.
	stopped := time.Now()
	d.stop(t)
	d2 := director(t, ctx, tl, nodes, d.num)
	t.Logf("director's SIGTERM: node %d holds the VIP after %v", d2.num, time.Since(stopped))
	if len(d2.data.Serving()) != 1 {
		t.Errorf("new director serves %v", d2.data.Serving())
	}
	other := a
	if d2 == a {
		other = b
	}
	waitPool(t, ctx, d2, web, []uint32{min(a.num, b.num), max(a.num, b.num)})

	// The other backend's node dies: out of the pool at its NODEDOWN,
	// its connections ended.
	wantDrop := netip.AddrPortFrom(netip.MustParseAddr(other.n.Agent.IP), num)
	var toOther bool
	for i := range 2 { // connections in progress, one to each backend
		be, _, ok := d2.data.Pick(vipAddr, netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}), 5000))
		if !ok {
			t.Fatal("no backend")
		}
		toOther = toOther || be == wantDrop
	}
	if !toOther {
		t.Fatalf("no connection went to node %d", other.num)
	}
	killed := time.Now()
	if err := other.n.Kill(); err != nil {
		t.Fatal(err)
	}
	other.stop(t)
	waitPool(t, ctx, d2, web, []uint32{d2.num})
	t.Logf("node %d killed: out of the pool after %v", other.num, time.Since(killed))
	for !slices.Contains(d2.data.Dropped(), wantDrop) {
		select {
		case <-ctx.Done():
			t.Fatalf("the connections to %v were not ended: dropped %v", wantDrop, d2.data.Dropped())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestLvsDirectorCutOff: the director's node loses its Consul agent,
// clmsd and dlmd at once (SIGKILL of all three) while its lvsd, in this
// process, runs on: a director cut off from the cluster. It drops the
// VIP when its lock is lost (its dlmd session ends), and another node
// takes the VIP only after that (dlmd's fencing, then lvsd.stop_timeout):
// never two holders.
func TestLvsDirectorCutOff(t *testing.T) {
	c := startDlm(t, 3, 0)
	ctx := ctxFor(t, 90*time.Second)
	tl := lvsdfake.NewVIPTimeline()
	nodes := map[uint32]*lvsNode{}
	for _, n := range c.Nodes {
		num := uint32(numberOf(t, ctx, n))
		nodes[num] = startLvs(t, n, num, tl, nil)
	}
	d := director(t, ctx, tl, nodes, 0)
	killed := time.Now()
	if err := d.n.Kill(); err != nil {
		t.Fatal(err)
	}
	d2 := director(t, ctx, tl, nodes, d.num)
	t.Logf("director %d cut off: node %d holds the VIP after %v", d.num, d2.num, time.Since(killed))
	if o := tl.Overlaps(); len(o) > 0 {
		t.Errorf("two nodes held the VIP at once: %v\nevents: %v", o, tl.Events())
	}
	if h := d.vips.Held(); len(h) != 0 {
		t.Errorf("the old director still holds %v", h)
	}
	var dropped, taken time.Time
	for _, e := range tl.Events() {
		switch {
		case e.Node == d.num && !e.Add:
			dropped = e.At
		case e.Node == d2.num && e.Add:
			taken = e.At
		}
	}
	t.Logf("the old director dropped the VIP %v after the cut, %v before the new one took it", dropped.Sub(killed), taken.Sub(dropped))
}
