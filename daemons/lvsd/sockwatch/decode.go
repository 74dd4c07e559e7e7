// Package sockwatch says which of lvsd's registered ports have a listening
// socket in this network namespace. It asks the kernel through the
// sock_diag netlink interface (NETLINK_SOCK_DIAG, inet_diag), never from
// /proc text, and Watch reports a change within one period. Sockets bound
// to loopback only do not count, nor (ListeningExcept, WatchExcept) those
// bound to lvsd's VIPs, where the director's own proxy listens. Only
// sockets owned by root or by one of the port's users (Want.UIDs) count:
// another local user's listener does not make the node a backend.
//
// The decoding of the kernel's inet_diag_msg records and the choice of
// which sockets count as serving a port are pure (decode.go, select.go);
// netlink.go is the shell that sends the dump requests.
package sockwatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Port is a registered port: its protocol ("tcp" or "udp") and number.
type Port struct {
	Proto string
	Num   uint16
}

func (p Port) String() string { return fmt.Sprintf("%s/%d", p.Proto, p.Num) }

// Socket states of include/net/tcp_states.h that matter here.
const (
	stateEstablished = 1
	stateClose       = 7 // an unconnected UDP socket
	stateListen      = 10
)

// Address families of inet_diag_msg.
const (
	afInet  = 2
	afInet6 = 10
)

// sizeofDiagMsg is the size of struct inet_diag_msg (linux/inet_diag.h):
// family, state, timer, retrans (1 byte each); the inet_diag_sockid (sport
// and dport big-endian, src and dst 16 bytes each, if, cookie[2]); expires,
// rqueue, wqueue, uid, inode.
const sizeofDiagMsg = 4 + 4 + 16 + 16 + 4 + 8 + 4*5

// offsetUID is where idiag_uid, in host byte order, starts.
const offsetUID = 4 + 4 + 16 + 16 + 4 + 8 + 4*3

// socket is what sockwatch keeps of one inet_diag_msg.
type socket struct {
	proto string // "tcp" or "udp", from the request the message answers
	state uint8
	local netip.AddrPort
	peer  netip.AddrPort
	uid   uint32 // the socket's owner (idiag_uid)
}

var errShort = errors.New("inet_diag_msg too short")

// decodeDiagMsg decodes the fixed part of one inet_diag_msg, the payload
// of a SOCK_DIAG_BY_FAMILY answer; attributes after it are ignored.
func decodeDiagMsg(proto string, b []byte) (socket, error) {
	if len(b) < sizeofDiagMsg {
		return socket{}, fmt.Errorf("%w: %d bytes", errShort, len(b))
	}
	family, state := b[0], b[1]
	sport := binary.BigEndian.Uint16(b[4:6])
	dport := binary.BigEndian.Uint16(b[6:8])
	var src, dst netip.Addr
	switch family {
	case afInet:
		src = netip.AddrFrom4([4]byte(b[8:12]))
		dst = netip.AddrFrom4([4]byte(b[24:28]))
	case afInet6:
		src = netip.AddrFrom16([16]byte(b[8:24]))
		dst = netip.AddrFrom16([16]byte(b[24:40]))
	default:
		return socket{}, fmt.Errorf("inet_diag_msg of family %d", family)
	}
	return socket{
		proto: proto,
		state: state,
		local: netip.AddrPortFrom(src, sport),
		peer:  netip.AddrPortFrom(dst, dport),
		uid:   binary.NativeEndian.Uint32(b[offsetUID : offsetUID+4]),
	}, nil
}
