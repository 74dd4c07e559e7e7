package proxy

import (
	"bufio"
	"bytes"
	"net/netip"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

func TestProxyHeader(t *testing.T) {
	p := netip.MustParseAddrPort
	tests := []struct {
		name      string
		proto     string
		client    netip.AddrPort
		dst       netip.AddrPort
		transport proxyproto.AddressFamilyAndProtocol
		wantErr   bool
	}{
		{"tcp ipv4", "tcp", p("198.51.100.7:40000"), p("192.0.2.10:80"), proxyproto.TCPv4, false},
		{"tcp ipv6", "tcp", p("[2001:db8::7]:40000"), p("[2001:db8::10]:443"), proxyproto.TCPv6, false},
		{"v4-mapped client on a dual-stack socket is ipv4", "tcp", p("[::ffff:198.51.100.7]:1"), p("[::ffff:192.0.2.10]:80"), proxyproto.TCPv4, false},
		{"udp ipv4", "udp", p("198.51.100.7:5353"), p("192.0.2.10:53"), proxyproto.UDPv4, false},
		{"udp ipv6", "udp", p("[2001:db8::7]:5353"), p("[2001:db8::10]:53"), proxyproto.UDPv6, false},
		{"sctp", "sctp", p("198.51.100.7:1"), p("192.0.2.10:2"), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := proxyHeader(tt.proto, tt.client, tt.dst)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(b)))
			if err != nil {
				t.Fatal(err)
			}
			if h.Version != 2 || h.Command != proxyproto.PROXY || h.TransportProtocol != tt.transport {
				t.Fatalf("header %+v", h)
			}
			if got := addrPort(h.SourceAddr); got != unmap(tt.client) {
				t.Fatalf("source %v, want %v", got, tt.client)
			}
			if got := addrPort(h.DestinationAddr); got != unmap(tt.dst) {
				t.Fatalf("destination %v, want %v", got, tt.dst)
			}
		})
	}
}

// FuzzProxyHeader: for any pair of addresses the header we send parses
// back, with the library's reader, to the same addresses.
func FuzzProxyHeader(f *testing.F) {
	f.Add(true, []byte{198, 51, 100, 7}, uint16(40000), []byte{192, 0, 2, 10}, uint16(80))
	f.Add(false, bytes.Repeat([]byte{0x20}, 16), uint16(1), []byte{192, 0, 2, 10}, uint16(53))
	f.Fuzz(func(t *testing.T, tcp bool, src []byte, sport uint16, dst []byte, dport uint16) {
		s, ok1 := netip.AddrFromSlice(src)
		d, ok2 := netip.AddrFromSlice(dst)
		if !ok1 || !ok2 {
			return
		}
		proto := "udp"
		if tcp {
			proto = "tcp"
		}
		client, to := netip.AddrPortFrom(s, sport), netip.AddrPortFrom(d, dport)
		b, err := proxyHeader(proto, client, to)
		if err != nil {
			t.Fatalf("%s %v -> %v: %v", proto, client, to, err)
		}
		h, payload, err := proxyproto.ParseUDPDatagram(append(b, 'x'))
		if err != nil {
			t.Fatalf("%s %v -> %v: header %x does not parse: %v", proto, client, to, b, err)
		}
		if string(payload) != "x" {
			t.Fatalf("payload %q after the header", payload)
		}
		gs, gd := addrPort(h.SourceAddr), addrPort(h.DestinationAddr)
		// One side IPv6 makes both IPv6 (the IPv4 one v4-mapped).
		if gs.Port() != sport || gd.Port() != dport || gs.Addr().Unmap() != s.Unmap() || gd.Addr().Unmap() != d.Unmap() {
			t.Fatalf("%s %v -> %v came back as %v -> %v", proto, client, to, gs, gd)
		}
	})
}
