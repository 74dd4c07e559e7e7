package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	proxyproto "github.com/pires/go-proxyproto"
)

func contextBackground() context.Context { return context.Background() }

func prefix(err error) error { return fmt.Errorf("proxy: %w", err) }

// proxyHeader is the PROXY protocol v2 header telling a backend that
// client connected to dst over proto ("tcp" or "udp"). An IPv4 client seen
// on a dual-stack socket (::ffff:a.b.c.d) is given as IPv4.
func proxyHeader(proto string, client, dst netip.AddrPort) ([]byte, error) {
	c := netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
	d := netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	var src, to net.Addr
	switch proto {
	case "tcp":
		src, to = net.TCPAddrFromAddrPort(c), net.TCPAddrFromAddrPort(d)
	case "udp":
		src, to = net.UDPAddrFromAddrPort(c), net.UDPAddrFromAddrPort(d)
	default:
		return nil, fmt.Errorf("proxy: protocol %q", proto)
	}
	h := proxyproto.HeaderProxyFromAddrs(2, src, to)
	b, err := h.Format()
	if err != nil {
		return nil, prefix(err)
	}
	return b, nil
}

// addrPort is the netip form of a TCP or UDP address, unmapped.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
