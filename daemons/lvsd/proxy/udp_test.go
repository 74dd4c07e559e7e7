package proxy

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// startUDP runs a UDP proxy on loopback until the test ends.
func startUDP(t *testing.T, p Picker, o Options) *UDP {
	t.Helper()
	pc, err := ListenUDP(loopback)
	if err != nil {
		t.Fatal(err)
	}
	px := NewUDP(pc, p, o)
	served := make(chan error, 1)
	go func() { served <- px.Serve() }()
	t.Cleanup(func() {
		if err := px.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return px
}

// udpBackend answers each datagram with reply(datagram).
func udpBackend(t *testing.T, reply func([]byte) []byte) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if r := reply(buf[:n]); r != nil {
				_, _ = pc.WriteToUDPAddrPort(r, from)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		wg.Wait()
	})
	return ap(pc.LocalAddr())
}

func tagged(tag string) func([]byte) []byte {
	return func(b []byte) []byte { return []byte(tag + ":" + string(b)) }
}

type udpClient struct {
	t *testing.T
	c *net.UDPConn
}

func newUDPClient(t *testing.T, px *UDP) *udpClient {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, px.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpClient{t, c}
}

// ask sends msg and returns the reply, failing after 5 s.
func (u *udpClient) ask(msg string) string {
	u.t.Helper()
	if _, err := u.c.Write([]byte(msg)); err != nil {
		u.t.Fatal(err)
	}
	_ = u.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, maxDatagram)
	n, err := u.c.Read(buf)
	if err != nil {
		u.t.Fatalf("reply to %q: %v", msg, err)
	}
	return string(buf[:n])
}

func (u *udpClient) send(msg string) {
	u.t.Helper()
	if _, err := u.c.Write([]byte(msg)); err != nil {
		u.t.Fatal(err)
	}
}

func TestUDPFlowPerClient(t *testing.T) {
	a, b := udpBackend(t, tagged("a")), udpBackend(t, tagged("b"))
	pk := newPicker(t, a, b)
	px := startUDP(t, pk, Options{})
	c1, c2 := newUDPClient(t, px), newUDPClient(t, px)
	if got := c1.ask("1"); got != "a:1" {
		t.Fatalf("client 1: %q", got)
	}
	if got := c2.ask("2"); got != "b:2" {
		t.Fatalf("client 2: %q", got)
	}
	// Later datagrams stay on their flows.
	if got := c1.ask("3"); got != "a:3" {
		t.Fatalf("client 1 again: %q", got)
	}
	if got := c2.ask("4"); got != "b:4" {
		t.Fatalf("client 2 again: %q", got)
	}
	if picks, _ := pk.stats(); picks != 2 || px.Flows() != 2 {
		t.Fatalf("picks %d flows %d, want 2 and 2", picks, px.Flows())
	}
}

func TestUDPProxyProtocolV2EveryDatagram(t *testing.T) {
	b := udpBackend(t, func(d []byte) []byte {
		h, payload, err := proxyproto.ParseUDPDatagram(d)
		if err != nil {
			return []byte("bad header: " + err.Error())
		}
		src, dst, ok := h.UDPAddrs()
		if !ok || h.TransportProtocol != proxyproto.UDPv4 {
			return []byte("not udp4")
		}
		return []byte(src.String() + ">" + dst.String() + ":" + string(payload))
	})
	px := startUDP(t, newPicker(t, b), Options{ProxyProtocol: true})
	c := newUDPClient(t, px)
	for _, m := range []string{"x", "y"} {
		want := c.c.LocalAddr().String() + ">" + px.Addr().String() + ":" + m
		if got := c.ask(m); got != want {
			t.Fatalf("backend saw %q, want %q", got, want)
		}
	}
}

func TestUDPIdleFlowEnds(t *testing.T) {
	b := udpBackend(t, tagged("b"))
	pk := newPicker(t, b)
	px := startUDP(t, pk, Options{FlowIdle: 50 * time.Millisecond})
	c := newUDPClient(t, px)
	if got := c.ask("1"); got != "b:1" {
		t.Fatalf("reply %q", got)
	}
	pk.waitDone(t) // the idle timeout ended the flow
	if px.Flows() != 0 {
		t.Fatalf("%d flows after idle", px.Flows())
	}
	if got := c.ask("2"); got != "b:2" {
		t.Fatalf("reply after idle %q", got)
	}
	if picks, _ := pk.stats(); picks != 2 {
		t.Fatalf("picks %d, want 2 (a new flow after idle)", picks)
	}
}

// TestUDPMaxFlows: a new client beyond the budget is dropped, the existing
// flow goes on. Serve handles datagrams in order, so the first client's
// reply after the second client's datagram proves that one was handled.
func TestUDPMaxFlows(t *testing.T) {
	b := udpBackend(t, tagged("b"))
	pk := newPicker(t, b)
	px := startUDP(t, pk, Options{Budget: NewBudget(Limits{Units: 1})})
	c1, c2 := newUDPClient(t, px), newUDPClient(t, px)
	if got := c1.ask("1"); got != "b:1" {
		t.Fatalf("reply %q", got)
	}
	c2.send("2")
	if got := c1.ask("3"); got != "b:3" {
		t.Fatalf("reply %q", got)
	}
	if px.Dropped() != 1 || px.Flows() != 1 {
		t.Fatalf("dropped %d flows %d, want 1 and 1", px.Dropped(), px.Flows())
	}
	if picks, _ := pk.stats(); picks != 1 {
		t.Fatalf("picks %d, want 1", picks)
	}
}

// refuseFirst offers no backend to its first Pick, then what its
// testPicker offers.
type refuseFirst struct {
	*testPicker
	refused bool
}

func (r *refuseFirst) Pick(c netip.AddrPort) (netip.AddrPort, func(), bool) {
	if !r.refused {
		r.refused = true // Pick is called with the proxy's lock held
		return netip.AddrPort{}, nil, false
	}
	return r.testPicker.Pick(c)
}

// TestUDPNoBackendDrops: a datagram with no backend is dropped and
// counted; the next client's reply proves Serve handled it.
func TestUDPNoBackendDrops(t *testing.T) {
	b := udpBackend(t, tagged("b"))
	px := startUDP(t, &refuseFirst{testPicker: newPicker(t, b)}, Options{})
	c1, c2 := newUDPClient(t, px), newUDPClient(t, px)
	c1.send("1")
	if got := c2.ask("2"); got != "b:2" {
		t.Fatalf("reply %q", got)
	}
	if px.Dropped() != 1 || px.Flows() != 1 {
		t.Fatalf("dropped %d flows %d, want 1 and 1", px.Dropped(), px.Flows())
	}
}

func TestUDPDropBackend(t *testing.T) {
	a, b := udpBackend(t, tagged("a")), udpBackend(t, tagged("b"))
	pk := newPicker(t, a)
	px := startUDP(t, pk, Options{})
	c := newUDPClient(t, px)
	if got := c.ask("1"); got != "a:1" {
		t.Fatalf("reply %q", got)
	}
	pk.setBackends(b)
	if n := px.DropBackend(a); n != 1 {
		t.Fatalf("DropBackend = %d, want 1", n)
	}
	if d := pk.waitDone(t); d != a {
		t.Fatalf("done for %s, want %s", d, a)
	}
	if got := c.ask("2"); got != "b:2" {
		t.Fatalf("reply after DropBackend %q, want it from b", got)
	}
}

// TestUDPRefusedBackendRepicks: a backend whose port is closed answers
// with ICMP port unreachable; its flow ends and the next datagram goes to
// another backend.
func TestUDPRefusedBackendRepicks(t *testing.T) {
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	dead := ap(pc.LocalAddr())
	pc.Close() // the port now refuses
	live := udpBackend(t, tagged("live"))
	pk := newPicker(t, dead, live)
	px := startUDP(t, pk, Options{})
	c := newUDPClient(t, px)
	c.send("lost")
	if d := pk.waitDone(t); d != dead {
		t.Fatalf("done for %s, want the dead %s", d, dead)
	}
	if got := c.ask("2"); got != "live:2" {
		t.Fatalf("reply %q", got)
	}
}

func TestUDPCloseEndsFlows(t *testing.T) {
	b := udpBackend(t, tagged("b"))
	pk := newPicker(t, b)
	pc, err := ListenUDP(loopback)
	if err != nil {
		t.Fatal(err)
	}
	px := NewUDP(pc, pk, Options{})
	served := make(chan error, 1)
	go func() { served <- px.Serve() }()
	for i := range 3 {
		c := newUDPClient(t, px)
		if got := c.ask("x"); got != "b:x" {
			t.Fatalf("client %d: %q", i, got)
		}
	}
	if err := px.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if _, open := pk.stats(); open != 0 || px.Flows() != 0 {
		t.Fatalf("open picks %d flows %d after Close", open, px.Flows())
	}
}

func TestListen(t *testing.T) {
	b := udpBackend(t, tagged("u"))
	tb := backend(t, echo)
	for _, tt := range []struct {
		proto   string
		backend netip.AddrPort
	}{{"tcp", tb}, {"udp", b}} {
		t.Run(tt.proto, func(t *testing.T) {
			px, err := Listen(tt.proto, loopback, newPicker(t, tt.backend), Options{})
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- px.Serve() }()
			c, err := net.Dial(tt.proto, px.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 8)); err != nil {
				t.Fatal(err)
			}
			if err := px.Close(); err != nil {
				t.Fatal(err)
			}
			if err := <-served; err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := Listen("sctp", loopback, newPicker(t), Options{}); err == nil {
		t.Fatal("sctp accepted")
	}
}
