package proxy

import (
	"io"
	"net"
	"net/netip"
	"testing"
)

// TestBudgetSharedAcrossProxies: the proxies of one daemon share one
// budget: with two units, a connection to each of two TCP proxies spends
// it, and a third to either is reset; a UDP flow counts against it too.
func TestBudgetSharedAcrossProxies(t *testing.T) {
	b := backend(t, echo)
	budget := NewBudget(Limits{Units: 2, Flows: 1, FlowsPerSource: 1})
	px1 := startTCP(t, newPicker(t, b), Options{Budget: budget})
	px2 := startTCP(t, newPicker(t, b), Options{Budget: budget})
	roundTrip := func(c *net.TCPConn) {
		t.Helper()
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	c1 := dialProxy(t, px1)
	roundTrip(c1)
	roundTrip(dialProxy(t, px2))
	expectReset(t, px1, "a third connection, on the first proxy, over a shared budget of 2")
	expectReset(t, px2, "a third connection, on the second proxy, over a shared budget of 2")

	// A UDP proxy of the same budget gets no flow while it is spent,
	// and one once a connection ended.
	ub := udpBackend(t, tagged("u"))
	upx := startUDP(t, newPicker(t, ub), Options{Budget: budget})
	uc := newUDPClient(t, upx)
	uc.send("dropped")
	// The datagram is read when the proxy gets to it: only once it was
	// dropped may a unit come free, or it would take that unit.
	waitFor(t, "the datagram dropped", func() bool { return upx.Dropped() == 1 })
	c1.Close()
	waitFor(t, "the closed connection's unit", func() bool { u, _ := budget.Used(); return u == 1 })
	if got := uc.ask("1"); got != "u:1" {
		t.Fatalf("reply %q", got)
	}
	if upx.Dropped() != 1 {
		t.Fatalf("dropped %d, want 1", upx.Dropped())
	}
}

// udpClientFrom is a UDP client of px bound to address from.
func udpClientFrom(t *testing.T, px *UDP, from string) *udpClient {
	t.Helper()
	c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(from)), px.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpClient{t, c}
}

// TestUDPFloodOfSources: datagrams from many distinct source addresses
// (as spoofed ones would be) open no more flows than the budget's share
// for flows, and leave the rest of the units to TCP connections.
func TestUDPFloodOfSources(t *testing.T) {
	ub, tb := udpBackend(t, tagged("u")), backend(t, echo)
	budget := NewBudget(Limits{Units: 6, Flows: 4, FlowsPerSource: 64})
	upx := startUDP(t, newPicker(t, ub), Options{Budget: budget})
	tpx := startTCP(t, newPicker(t, tb), Options{Budget: budget})
	first := udpClientFrom(t, upx, "127.0.0.1:0")
	if got := first.ask("0"); got != "u:0" {
		t.Fatalf("reply %q", got)
	}
	const sources = 40
	for i := range sources {
		udpClientFrom(t, upx, netip.AddrFrom4([4]byte{127, 0, 1, byte(i + 1)}).String()+":0").send("flood")
	}
	// Serve handles datagrams in order: this reply comes after the flood.
	if got := first.ask("1"); got != "u:1" {
		t.Fatalf("reply %q", got)
	}
	if n, d := upx.Flows(), upx.Dropped(); n != 4 || d != sources-3 {
		t.Fatalf("%d flows, %d dropped; want 4 and %d", n, d, sources-3)
	}
	// The two units flows may not take are the TCP proxy's.
	for range 2 {
		c := dialProxy(t, tpx)
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	expectReset(t, tpx, "a connection over the budget")
}

// TestUDPFlowsPerSource: one client address gets at most FlowsPerSource
// flows, whatever its ports; another address still gets one.
func TestUDPFlowsPerSource(t *testing.T) {
	ub := udpBackend(t, tagged("u"))
	budget := NewBudget(Limits{Units: 16, Flows: 16, FlowsPerSource: 2})
	upx := startUDP(t, newPicker(t, ub), Options{Budget: budget})
	first := udpClientFrom(t, upx, "127.0.0.1:0")
	if got := first.ask("0"); got != "u:0" {
		t.Fatalf("reply %q", got)
	}
	for range 5 {
		udpClientFrom(t, upx, "127.0.0.1:0").send("more")
	}
	if got := first.ask("1"); got != "u:1" {
		t.Fatalf("reply %q", got)
	}
	if n, d := upx.Flows(), upx.Dropped(); n != 2 || d != 4 {
		t.Fatalf("%d flows, %d dropped from one address; want 2 and 4", n, d)
	}
	if got := udpClientFrom(t, upx, "127.0.0.2:0").ask("2"); got != "u:2" {
		t.Fatalf("another address: reply %q", got)
	}
}
