package vip

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

func TestFits(t *testing.T) {
	p := netip.MustParsePrefix
	lan4 := []netip.Prefix{p("10.77.0.11/24")}
	lan6 := []netip.Prefix{p("fe80::1/64"), p("2001:db8::11/64")}
	for _, tc := range []struct {
		name    string
		vip     netip.Prefix
		subnets []netip.Prefix
		want    string // "" = fits; else a part of the error
	}{
		{"inside", p("10.77.0.100/24"), lan4, ""},
		{"host prefix inside", p("10.77.0.100/32"), lan4, ""},
		{"second subnet", p("192.168.5.9/24"), []netip.Prefix{p("10.77.0.11/24"), p("192.168.5.1/24")}, ""},
		{"outside", p("10.78.0.100/24"), lan4, "not inside a subnet of eth0"},
		{"no address of its family", p("2001:db8::100/64"), lan4, "eth0 has no IPv6 address"},
		{"no address at all", p("10.77.0.100/24"), nil, "eth0 has no IPv4 address"},
		{"network address", p("10.77.0.0/24"), lan4, "network address of 10.77.0.0/24"},
		{"broadcast address", p("10.77.0.255/24"), lan4, "broadcast address of 10.77.0.0/24"},
		{"point to point /31 has no broadcast", p("10.9.0.1/31"), []netip.Prefix{p("10.9.0.0/31")}, ""},
		{"IPv6 inside", p("2001:db8::100/64"), lan6, ""},
		{"IPv6 outside", p("2001:db9::100/64"), lan6, "not inside a subnet"},
		{"IPv6 link-local", p("fe80::100/64"), lan6, "not a unicast address"},
		{"loopback", p("127.0.0.2/8"), []netip.Prefix{p("127.0.0.1/8")}, "not a unicast address"},
		{"multicast", p("224.0.0.5/24"), lan4, "not a unicast address"},
		{"unspecified", p("0.0.0.0/0"), lan4, "not a unicast address"},
		{"4in6", p("::ffff:10.77.0.100/120"), lan4, "write the IPv4 address as such"},
		{"invalid", netip.Prefix{}, lan4, "not an address/prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := fits("eth0", tc.vip, tc.subnets)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("fits: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("fits: no error, want %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("fits: %v, want %q in it", err, tc.want)
			case err != nil && strings.Count(err.Error(), "vip: ") != 1:
				t.Fatalf("fits: %v: the prefix once", err)
			}
		})
	}
}

func TestLastAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.77.0.0/24", "10.77.0.255"},
		{"10.0.0.0/8", "10.255.255.255"},
		{"10.77.0.128/25", "10.77.0.255"},
		{"10.77.0.0/22", "10.77.3.255"},
		{"10.77.0.7/32", "10.77.0.7"},
		{"0.0.0.0/0", "255.255.255.255"},
	} {
		if got := lastAddr(netip.MustParsePrefix(tc.in)); got.String() != tc.want {
			t.Errorf("lastAddr(%s) = %v, want %s", tc.in, got, tc.want)
		}
	}
}

func TestGratuitousARP(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x42}
	addr := netip.MustParseAddr("10.77.0.100")
	ps := gratuitousARP(mac, addr)
	if len(ps) != 2 {
		t.Fatalf("%d frames, want a request and a reply", len(ps))
	}
	for i, want := range []struct {
		op     arp.Operation
		target net.HardwareAddr
	}{
		{arp.OperationRequest, net.HardwareAddr{0, 0, 0, 0, 0, 0}},
		{arp.OperationReply, ethernet.Broadcast},
	} {
		p := ps[i]
		if p.Operation != want.op || p.SenderIP != addr || p.TargetIP != addr ||
			p.SenderHardwareAddr.String() != mac.String() || p.TargetHardwareAddr.String() != want.target.String() {
			t.Errorf("frame %d = %+v, want op %v, sender and target %v, sender MAC %v, target MAC %v", i, p, want.op, addr, mac, want.target)
		}
		if _, err := p.MarshalBinary(); err != nil {
			t.Errorf("frame %d: %v", i, err)
		}
	}
}

func TestUnsolicitedNA(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x42}
	addr := netip.MustParseAddr("2001:db8::100")
	na := unsolicitedNA(mac, addr)
	if na.Solicited || !na.Override || na.Router || na.TargetAddress != addr {
		t.Fatalf("advertisement %+v: want unsolicited, override, not a router, target %v", na, addr)
	}
	if len(na.Options) != 1 {
		t.Fatalf("options %v: want the target link-layer address only", na.Options)
	}
}
