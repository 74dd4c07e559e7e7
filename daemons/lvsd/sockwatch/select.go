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

// Want is a port to look at and the owners, besides root, whose sockets
// count for it: a socket of any other user does not put the node into the
// port's pool, so that a local user cannot draw the port's clients to a
// server of their own (nc -l 8080 for tcp/8080).
type Want struct {
	Port Port
	// UIDs are the users, besides root (uid 0), whose sockets count.
	UIDs []uint32
}

// ownedBy says whether a socket of uid counts for a port that allows
// uids besides root.
func ownedBy(uid uint32, uids []uint32) bool {
	return uid == 0 || slices.Contains(uids, uid)
}

// listening answers ListeningExcept for the sockets the kernel reported:
// every wanted port is in the map, true when at least one socket serves
// it and is owned by root or one of the port's users. A port wanted twice
// allows the users of both.
func listening(want []Want, except []netip.Addr, socks []socket) map[Port]bool {
	ex := make([]netip.Addr, len(except))
	for i, a := range except {
		ex[i] = a.Unmap()
	}
	out := make(map[Port]bool, len(want))
	uids := make(map[Port][]uint32, len(want))
	for _, w := range want {
		out[w.Port] = false
		uids[w.Port] = append(uids[w.Port], w.UIDs...)
	}
	for _, s := range socks {
		p := Port{Proto: s.proto, Num: s.local.Port()}
		if _, ok := out[p]; ok && serves(s, ex) && ownedBy(s.uid, uids[p]) {
			out[p] = true
		}
	}
	return out
}

// rootOnly is want with no user besides root.
func rootOnly(want []Port) []Want {
	out := make([]Want, len(want))
	for i, p := range want {
		out[i] = Want{Port: p}
	}
	return out
}
