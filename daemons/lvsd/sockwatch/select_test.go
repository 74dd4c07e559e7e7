package sockwatch

import (
	"maps"
	"net/netip"
	"testing"
)

func TestServes(t *testing.T) {
	ap := netip.MustParseAddrPort
	none4, none6 := ap("0.0.0.0:0"), ap("[::]:0")
	tests := []struct {
		name   string
		s      socket
		except []netip.Addr
		want   bool
	}{
		{"tcp listener on the wildcard", socket{"tcp", stateListen, ap("0.0.0.0:80"), none4, 0}, nil, true},
		{"tcp listener on the ipv6 wildcard", socket{"tcp", stateListen, ap("[::]:80"), none6, 0}, nil, true},
		{"tcp listener on a node address", socket{"tcp", stateListen, ap("10.0.0.2:80"), none4, 0}, nil, true},
		{"tcp listener on loopback only", socket{"tcp", stateListen, ap("127.0.0.1:80"), none4, 0}, nil, false},
		{"tcp listener on ::1 only", socket{"tcp", stateListen, ap("[::1]:80"), none6, 0}, nil, false},
		{"tcp listener on v4-mapped loopback", socket{"tcp", stateListen, ap("[::ffff:127.0.0.1]:80"), none6, 0}, nil, false},
		{"tcp established connection", socket{"tcp", stateEstablished, ap("10.0.0.2:80"), ap("10.0.0.9:4000"), 0}, nil, false},
		{"tcp closed socket", socket{"tcp", stateClose, ap("0.0.0.0:80"), none4, 0}, nil, false},
		{"udp bound unconnected", socket{"udp", stateClose, ap("0.0.0.0:53"), none4, 0}, nil, true},
		{"udp on loopback", socket{"udp", stateClose, ap("127.0.0.53:53"), none4, 0}, nil, false},
		{"udp connected (a client's)", socket{"udp", stateEstablished, ap("10.0.0.2:53"), ap("10.0.0.1:53"), 0}, nil, false},
		{"udp in close with a peer", socket{"udp", stateClose, ap("10.0.0.2:53"), ap("10.0.0.1:53"), 0}, nil, false},
		{"udp listen state is not a udp state", socket{"udp", stateListen, ap("0.0.0.0:53"), none4, 0}, nil, false},
		{"unknown protocol", socket{"sctp", stateListen, ap("0.0.0.0:80"), none4, 0}, nil, false},
		{"tcp listener on a VIP (the director's proxy)", socket{"tcp", stateListen, ap("192.0.2.10:80"), none4, 0},
			[]netip.Addr{netip.MustParseAddr("192.0.2.10")}, false},
		{"udp on an ipv6 VIP", socket{"udp", stateClose, ap("[2001:db8::10]:53"), none6, 0},
			[]netip.Addr{netip.MustParseAddr("2001:db8::10")}, false},
		{"tcp listener on the wildcard with a VIP", socket{"tcp", stateListen, ap("0.0.0.0:80"), none4, 0},
			[]netip.Addr{netip.MustParseAddr("192.0.2.10")}, true},
		{"tcp listener on another address than the VIP", socket{"tcp", stateListen, ap("10.0.0.2:80"), none4, 0},
			[]netip.Addr{netip.MustParseAddr("192.0.2.10")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := serves(tt.s, tt.except); got != tt.want {
				t.Fatalf("serves(%+v) = %v, want %v", tt.s, got, tt.want)
			}
		})
	}
}

func TestListening(t *testing.T) {
	ap := netip.MustParseAddrPort
	none4 := ap("0.0.0.0:0")
	tcp80, tcp443, udp53, udp80 := Port{"tcp", 80}, Port{"tcp", 443}, Port{"udp", 53}, Port{"udp", 80}
	tests := []struct {
		name   string
		want   []Port
		socks  []socket
		out    map[Port]bool
		except []netip.Addr
	}{
		{"nothing wanted", nil, []socket{{"tcp", stateListen, ap("0.0.0.0:80"), none4, 0}}, map[Port]bool{}, nil},
		{"nothing listens", []Port{tcp80, udp53}, nil, map[Port]bool{tcp80: false, udp53: false}, nil},
		{"protocols are apart", []Port{tcp80, udp80},
			[]socket{{"tcp", stateListen, ap("0.0.0.0:80"), none4, 0}},
			map[Port]bool{tcp80: true, udp80: false}, nil},
		{"unwanted ports are left out", []Port{tcp443},
			[]socket{{"tcp", stateListen, ap("0.0.0.0:80"), none4, 0}, {"tcp", stateListen, ap("0.0.0.0:443"), none4, 0}},
			map[Port]bool{tcp443: true}, nil},
		{"one serving socket among others is enough", []Port{tcp80},
			[]socket{{"tcp", stateListen, ap("127.0.0.1:80"), none4, 0}, {"tcp", stateListen, ap("[::]:80"), ap("[::]:0"), 0}},
			map[Port]bool{tcp80: true}, nil},
		{"loopback only does not count", []Port{tcp80},
			[]socket{{"tcp", stateListen, ap("127.0.0.1:80"), none4, 0}},
			map[Port]bool{tcp80: false}, nil},
		{"duplicates in want", []Port{udp53, udp53},
			[]socket{{"udp", stateClose, ap("0.0.0.0:53"), none4, 0}},
			map[Port]bool{udp53: true}, nil},
		{"the director's own proxy on a VIP does not count", []Port{tcp80, udp53},
			[]socket{{"tcp", stateListen, ap("192.0.2.10:80"), none4, 0}, {"udp", stateClose, ap("192.0.2.10:53"), none4, 0}},
			map[Port]bool{tcp80: false, udp53: false}, []netip.Addr{netip.MustParseAddr("192.0.2.10")}},
		{"a v4-mapped VIP matches", []Port{tcp80},
			[]socket{{"tcp", stateListen, ap("[::ffff:192.0.2.10]:80"), ap("[::]:0"), 0}},
			map[Port]bool{tcp80: false}, []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.10")}},
		{"a server beside the proxy still counts", []Port{tcp80},
			[]socket{{"tcp", stateListen, ap("192.0.2.10:80"), none4, 0}, {"tcp", stateListen, ap("10.0.0.2:80"), none4, 0}},
			map[Port]bool{tcp80: true}, []netip.Addr{netip.MustParseAddr("192.0.2.10")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := listening(rootOnly(tt.want), tt.except, tt.socks); !maps.Equal(got, tt.out) {
				t.Fatalf("listening = %v, want %v", got, tt.out)
			}
		})
	}
}

// TestListeningOwners: a socket counts for a port only when root or one
// of the port's users owns it, so that any local user cannot put the
// node into a pool (nc -l 8080 for tcp/8080).
func TestListeningOwners(t *testing.T) {
	ap := netip.MustParseAddrPort
	none4 := ap("0.0.0.0:0")
	tcp8080, udp53 := Port{"tcp", 8080}, Port{"udp", 53}
	nobody := socket{"tcp", stateListen, ap("0.0.0.0:8080"), none4, 65534}
	tests := []struct {
		name  string
		want  []Want
		socks []socket
		out   map[Port]bool
	}{
		{"root's listener counts", []Want{{tcp8080, nil}},
			[]socket{{"tcp", stateListen, ap("0.0.0.0:8080"), none4, 0}}, map[Port]bool{tcp8080: true}},
		{"another user's listener does not", []Want{{tcp8080, nil}},
			[]socket{nobody}, map[Port]bool{tcp8080: false}},
		{"a listed user's listener counts", []Want{{tcp8080, []uint32{1000, 65534}}},
			[]socket{nobody}, map[Port]bool{tcp8080: true}},
		{"a user listed for another port does not", []Want{{tcp8080, nil}, {udp53, []uint32{65534}}},
			[]socket{nobody, {"udp", stateClose, ap("0.0.0.0:53"), none4, 65534}},
			map[Port]bool{tcp8080: false, udp53: true}},
		{"root beside another user", []Want{{tcp8080, nil}},
			[]socket{nobody, {"tcp", stateListen, ap("[::]:8080"), ap("[::]:0"), 0}}, map[Port]bool{tcp8080: true}},
		{"a port wanted twice allows the users of both", []Want{{tcp8080, nil}, {tcp8080, []uint32{65534}}},
			[]socket{nobody}, map[Port]bool{tcp8080: true}},
		{"a listed user's loopback listener still does not", []Want{{tcp8080, []uint32{65534}}},
			[]socket{{"tcp", stateListen, ap("127.0.0.1:8080"), none4, 65534}}, map[Port]bool{tcp8080: false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := listening(tt.want, nil, tt.socks); !maps.Equal(got, tt.out) {
				t.Fatalf("listening = %v, want %v", got, tt.out)
			}
		})
	}
}
