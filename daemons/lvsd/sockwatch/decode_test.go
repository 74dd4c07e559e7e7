package sockwatch

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// diagMsg builds the bytes of an inet_diag_msg as the kernel sends them.
func diagMsg(state uint8, local, peer netip.AddrPort) []byte {
	b := make([]byte, sizeofDiagMsg)
	b[0] = afInet6
	if local.Addr().Is4() {
		b[0] = afInet
	}
	b[1] = state
	binary.BigEndian.PutUint16(b[4:6], local.Port())
	binary.BigEndian.PutUint16(b[6:8], peer.Port())
	if local.Addr().Is4() {
		l, p := local.Addr().As4(), peer.Addr().As4()
		copy(b[8:], l[:])
		copy(b[24:], p[:])
	} else {
		l, p := local.Addr().As16(), peer.Addr().As16()
		copy(b[8:], l[:])
		copy(b[24:], p[:])
	}
	binary.NativeEndian.PutUint32(b[68:72], 12345) // inode
	return b
}

// withUID sets the idiag_uid of a message built by diagMsg.
func withUID(b []byte, uid uint32) []byte {
	binary.NativeEndian.PutUint32(b[64:68], uid)
	return b
}

func TestDecodeDiagMsg(t *testing.T) {
	ap := netip.MustParseAddrPort
	v6 := diagMsg(stateListen, ap("[2001:db8::1]:443"), ap("[::]:0"))
	bad := diagMsg(stateListen, ap("10.0.0.1:80"), ap("0.0.0.0:0"))
	bad[0] = 1 // AF_UNIX
	tests := []struct {
		name    string
		proto   string
		in      []byte
		want    socket
		wantErr bool
	}{
		{"ipv4 listener", "tcp", diagMsg(stateListen, ap("0.0.0.0:80"), ap("0.0.0.0:0")),
			socket{"tcp", stateListen, ap("0.0.0.0:80"), ap("0.0.0.0:0"), 0}, false},
		{"ipv6 listener", "tcp", v6,
			socket{"tcp", stateListen, ap("[2001:db8::1]:443"), ap("[::]:0"), 0}, false},
		{"attributes after the message are ignored", "udp",
			append(diagMsg(stateClose, ap("10.1.2.3:53"), ap("0.0.0.0:0")), 8, 0, 1, 0, 1, 2, 3, 4),
			socket{"udp", stateClose, ap("10.1.2.3:53"), ap("0.0.0.0:0"), 0}, false},
		{"connected udp keeps its peer", "udp", diagMsg(stateEstablished, ap("10.0.0.1:5353"), ap("10.0.0.2:53")),
			socket{"udp", stateEstablished, ap("10.0.0.1:5353"), ap("10.0.0.2:53"), 0}, false},
		{"the owner's uid", "tcp", withUID(diagMsg(stateListen, ap("0.0.0.0:8080"), ap("0.0.0.0:0")), 65534),
			socket{"tcp", stateListen, ap("0.0.0.0:8080"), ap("0.0.0.0:0"), 65534}, false},
		{"empty", "tcp", nil, socket{}, true},
		{"one byte short", "tcp", v6[:sizeofDiagMsg-1], socket{}, true},
		{"unknown family", "tcp", bad, socket{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeDiagMsg(tt.proto, tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// FuzzDecodeDiagMsg: whatever the kernel (or a bug) sends, decoding never
// panics, and a message it accepts has an IPv4 or IPv6 local address.
func FuzzDecodeDiagMsg(f *testing.F) {
	ap := netip.MustParseAddrPort
	f.Add(diagMsg(stateListen, ap("0.0.0.0:80"), ap("0.0.0.0:0")))
	f.Add(diagMsg(stateClose, ap("[::]:53"), ap("[::]:0")))
	f.Add([]byte{})
	f.Add(make([]byte, sizeofDiagMsg-1))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, proto := range []string{"tcp", "udp"} {
			s, err := decodeDiagMsg(proto, b)
			if err != nil {
				continue
			}
			if !s.local.IsValid() || !s.peer.IsValid() {
				t.Fatalf("accepted %x with an invalid address: %+v", b, s)
			}
			if s.local.Addr().Is4() != (b[0] == afInet) {
				t.Fatalf("family %d decoded as %v", b[0], s.local)
			}
			_ = listening([]Want{{Port{proto, s.local.Port()}, []uint32{s.uid}}}, []netip.Addr{s.local.Addr()}, []socket{s})
		}
	})
}
