package sockwatch

import (
	"net/netip"
	"slices"
)

// serves says whether s is a socket that accepts traffic for its local
// port from another node: a TCP socket in LISTEN, or an unconnected UDP
// socket, bound to the wildcard or to an address that is not loopback.
// A server bound to 127.0.0.1 or ::1 only cannot be reached by the
// director, so it does not put its node into the pool; nor does a socket
// bound to one of the addresses in except (lvsd's VIPs: on the director
// its own proxy listens there, and that must not make the director a
// backend of itself).
func serves(s socket, except []netip.Addr) bool {
	switch s.proto {
	case "tcp":
		if s.state != stateListen {
			return false
		}
	case "udp":
		// A connected UDP socket (state ESTABLISHED) is a client's.
		if s.state != stateClose || s.peer.Port() != 0 {
			return false
		}
	default:
		return false
	}
	a := s.local.Addr().Unmap()
	return !a.IsLoopback() && !slices.Contains(except, a)
}

// listening answers Listening for the sockets the kernel reported: every
// wanted port is in the map, true when at least one socket serves it.
func listening(want []Port, except []netip.Addr, socks []socket) map[Port]bool {
	ex := make([]netip.Addr, len(except))
	for i, a := range except {
		ex[i] = a.Unmap()
	}
	out := make(map[Port]bool, len(want))
	for _, p := range want {
		out[p] = false
	}
	for _, s := range socks {
		p := Port{Proto: s.proto, Num: s.local.Port()}
		if _, ok := out[p]; ok && serves(s, ex) {
			out[p] = true
		}
	}
	return out
}
