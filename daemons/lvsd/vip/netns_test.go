package vip

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// pair is a throw-away lab: the test's thread in a new network namespace
// (the director's side) holding dirIf, whose veth peer peerIf lives in a
// second new namespace, reached through peer.
type pair struct {
	dir, peer netns.NsHandle
	peerNL    *netlink.Handle
	dirMAC    net.HardwareAddr
}

const (
	dirIf  = "vipdir0"
	peerIf = "vippeer0"
)

// newPair locks the calling goroutine to its thread and moves that thread
// into a fresh namespace for good: the thread is thrown away when the test
// ends (a goroutine that exits locked takes its thread with it), so nothing
// leaks into the test binary's namespace. dirAddr and peerAddr are put on
// the two ends, and both are up.
func newPair(t *testing.T, dirAddr, peerAddr netip.Prefix) *pair {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	runtime.LockOSThread() // never unlocked: see above
	peer, err := netns.New()
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("no network namespaces here: %v", err)
		}
		t.Fatalf("peer namespace: %v", err)
	}
	t.Cleanup(func() { peer.Close() })
	noDAD(t)
	dir, err := netns.New()
	if err != nil {
		t.Fatalf("director namespace: %v", err)
	}
	t.Cleanup(func() { dir.Close() })
	noDAD(t)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: dirIf}, PeerName: peerIf}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("veth: %v", err)
	}
	pl, err := netlink.LinkByName(peerIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(pl, int(peer)); err != nil {
		t.Fatalf("move %s: %v", peerIf, err)
	}
	peerNL, err := netlink.NewHandleAt(peer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(peerNL.Close)
	p := &pair{dir: dir, peer: peer, peerNL: peerNL}
	for _, side := range []struct {
		nl   *netlink.Handle
		name string
		addr netip.Prefix
	}{{nil, dirIf, dirAddr}, {peerNL, peerIf, peerAddr}} {
		var l netlink.Link
		if side.nl == nil {
			l, err = netlink.LinkByName(side.name)
		} else {
			l, err = side.nl.LinkByName(side.name)
		}
		if err != nil {
			t.Fatal(err)
		}
		a := toNetlink(side.addr)
		a.Flags = unix.IFA_F_NODAD
		if side.nl == nil {
			err = netlink.AddrAdd(l, a)
			if err == nil {
				err = netlink.LinkSetUp(l)
			}
			p.dirMAC = l.Attrs().HardwareAddr
		} else {
			err = side.nl.AddrAdd(l, a)
			if err == nil {
				err = side.nl.LinkSetUp(l)
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", side.name, err)
		}
	}
	return p
}

// waitLinkLocal waits until the director's end has a usable (no longer
// tentative) link-local address, which announcing over IPv6 binds to: it
// comes only once the veth has a carrier, that is once both ends are up.
func waitLinkLocal(t *testing.T) {
	t.Helper()
	l, err := netlink.LinkByName(dirIf)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		as, err := netlink.AddrList(l, netlink.FAMILY_V6)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.IP.IsLinkLocalUnicast() && a.Flags&unix.IFA_F_TENTATIVE == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no usable link-local address on %s: %v", dirIf, as)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noDAD turns duplicate address detection off in the thread's namespace,
// so the veths' link-local addresses are usable as soon as they are up.
func noDAD(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		return // no IPv6 in this kernel; the IPv6 test skips
	}
	for _, k := range []string{"default", "all"} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/accept_dad", []byte("0"), 0o644); err != nil {
			t.Fatalf("accept_dad: %v", err)
		}
	}
}

// seedPeer gives the peer a neighbour entry for addr with a MAC that is
// not the director's, as a client that talked to the previous director
// has: Linux updates an existing entry from an announcement (it creates
// none unless arp_accept or accept_untracked_na says so).
func (p *pair) seedPeer(t *testing.T, addr netip.Addr) {
	t.Helper()
	l, err := p.peerNL.LinkByName(peerIf)
	if err != nil {
		t.Fatal(err)
	}
	n := &netlink.Neigh{LinkIndex: l.Attrs().Index, IP: addr.AsSlice(), HardwareAddr: net.HardwareAddr{0x02, 0xde, 0xad, 0, 0, 0x01}, State: netlink.NUD_STALE}
	if addr.Is4() {
		n.Family = netlink.FAMILY_V4
	} else {
		n.Family = netlink.FAMILY_V6
	}
	if err := p.peerNL.NeighAdd(n); err != nil {
		t.Fatalf("seed the peer's entry for %v: %v", addr, err)
	}
}

// peerMAC is the MAC the peer's neighbour table holds for addr.
func (p *pair) peerMAC(t *testing.T, addr netip.Addr) net.HardwareAddr {
	t.Helper()
	l, err := p.peerNL.LinkByName(peerIf)
	if err != nil {
		t.Fatal(err)
	}
	fam := netlink.FAMILY_V4
	if addr.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns, err := p.peerNL.NeighList(l.Attrs().Index, fam)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == addr {
			return n.HardwareAddr
		}
	}
	return nil
}

// waitPeerLearns polls the peer's table until it has the director's MAC
// for addr: the kernel handles the frame asynchronously (softirq), so
// there is no event to wait on short of a netlink subscription.
func (p *pair) waitPeerLearns(t *testing.T, addr netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := p.peerMAC(t, addr)
		if bytes.Equal(got, p.dirMAC) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the peer has %v for %v, want the director's %v", got, addr, p.dirMAC)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dialFromPeer connects from the peer's namespace to addr, where the
// director's namespace listens: the VIP answers.
func (p *pair) dialFromPeer(t *testing.T, addr netip.Addr) {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatalf("listen on the VIP: %v", err)
	}
	defer ln.Close()
	if err := netns.Set(p.peer); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 3*time.Second)
	if serr := netns.Set(p.dir); serr != nil {
		t.Fatal(serr)
	}
	if err != nil {
		t.Fatalf("dial the VIP from the peer: %v", err)
	}
	c.Close()
}

func TestVIPOnVeth(t *testing.T) {
	for _, tc := range []struct {
		name           string
		dir, peer, vip string
		outside        string
	}{
		{"IPv4", "192.0.2.1/24", "192.0.2.2/24", "192.0.2.100/24", "198.51.100.7/24"},
		{"IPv6", "2001:db8::1/64", "2001:db8::2/64", "2001:db8::100/64", "2001:db8:1::7/64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "IPv6" {
				if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
					t.Skip("no IPv6 in this kernel")
				}
			}
			vip := netip.MustParsePrefix(tc.vip)
			p := newPair(t, netip.MustParsePrefix(tc.dir), netip.MustParsePrefix(tc.peer))
			if vip.Addr().Is6() {
				waitLinkLocal(t)
			}

			if err := Check(dirIf, vip); err != nil {
				t.Fatalf("Check: %v", err)
			}
			if err := Check(dirIf, netip.MustParsePrefix(tc.outside)); err == nil || !strings.Contains(err.Error(), "not inside a subnet of "+dirIf) {
				t.Fatalf("Check outside the subnet: %v", err)
			}
			if err := Check("novip0", vip); err == nil || err.Error() != `vip: interface "novip0" does not exist` {
				t.Fatalf("Check on a missing interface: %v", err)
			}

			p.seedPeer(t, vip.Addr())
			for range 2 { // idempotent
				if err := Add(dirIf, vip); err != nil {
					t.Fatalf("Add: %v", err)
				}
			}
			if ok, err := Has(dirIf, vip.Addr()); err != nil || !ok {
				t.Fatalf("after Add: Has = %v, %v", ok, err)
			}
			if err := Announce(dirIf, vip.Addr()); err != nil {
				t.Fatalf("Announce: %v", err)
			}
			p.waitPeerLearns(t, vip.Addr())
			p.dialFromPeer(t, vip.Addr())

			for range 2 {
				if err := Remove(dirIf, vip); err != nil {
					t.Fatalf("Remove: %v", err)
				}
			}
			if ok, err := Has(dirIf, vip.Addr()); err != nil || ok {
				t.Fatalf("after Remove: Has = %v, %v", ok, err)
			}
			if err := Add("novip0", vip); err == nil || !strings.Contains(err.Error(), "does not exist") {
				t.Fatalf("Add on a missing interface: %v", err)
			}
		})
	}
}
