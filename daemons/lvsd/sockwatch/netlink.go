package sockwatch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// diagRequest is struct inet_diag_req_v2 (linux/inet_diag.h) for a dump of
// one family and protocol, restricted by the kernel to the states wanted:
// the dump of a busy server then carries its few listeners, not every
// established connection.
type diagRequest struct {
	family   uint8
	protocol uint8
	states   uint32
}

const sizeofDiagRequest = 4 + 4 + 48

func (r *diagRequest) Len() int { return sizeofDiagRequest }

func (r *diagRequest) Serialize() []byte {
	b := make([]byte, sizeofDiagRequest)
	b[0] = r.family
	b[1] = r.protocol
	binary.NativeEndian.PutUint32(b[4:8], r.states)
	return b // the inet_diag_sockid stays zero: a dump matches any
}

// dump asks the kernel for the sockets of one protocol and family in the
// states wanted and decodes the answers.
func dump(proto string, family uint8) ([]socket, error) {
	r := &diagRequest{family: family}
	switch proto {
	case "tcp":
		r.protocol, r.states = unix.IPPROTO_TCP, 1<<stateListen
	case "udp":
		r.protocol, r.states = unix.IPPROTO_UDP, 1<<stateClose
	default:
		return nil, fmt.Errorf("protocol %q", proto)
	}
	req := nl.NewNetlinkRequest(nl.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP)
	req.AddData(r)
	var (
		socks  []socket
		decErr error
	)
	err := req.ExecuteIter(unix.NETLINK_INET_DIAG, nl.SOCK_DIAG_BY_FAMILY, func(msg []byte) bool {
		s, err := decodeDiagMsg(proto, msg)
		if err != nil {
			decErr = err
			return false
		}
		socks = append(socks, s)
		return true
	})
	if err != nil {
		return nil, err
	}
	if decErr != nil {
		return nil, decErr
	}
	return socks, nil
}

// Listening says, for each wanted port, whether a socket of root in this
// network namespace serves it: a TCP socket in LISTEN or an unconnected UDP
// socket, IPv4 or IPv6, bound to the wildcard or to an address that is not
// loopback. Every wanted port is in the map.
func Listening(want []Port) (map[Port]bool, error) {
	return ListeningExcept(rootOnly(want), nil)
}

// ListeningExcept is Listening where the sockets of each wanted port's
// users count too, and sockets bound to one of the addresses in except do
// not: lvsd passes its VIPs, on which the director's own proxy listens.
func ListeningExcept(want []Want, except []netip.Addr) (map[Port]bool, error) {
	var protos []string
	seen := map[string]bool{}
	for _, w := range want {
		p := w.Port
		if p.Proto != "tcp" && p.Proto != "udp" {
			return nil, fmt.Errorf("sockwatch: port %s: protocol must be tcp or udp", p)
		}
		if !seen[p.Proto] {
			seen[p.Proto] = true
			protos = append(protos, p.Proto)
		}
	}
	var socks []socket
	for _, proto := range protos {
		for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
			s, err := dumpRetry(proto, family)
			if err != nil {
				return nil, fmt.Errorf("sockwatch: %s dump of family %d: %w", proto, family, err)
			}
			socks = append(socks, s...)
		}
	}
	return listening(want, except, socks), nil
}

// dumpRetry retries a dump the kernel interrupted (the socket table changed
// under it) a few times before giving up.
func dumpRetry(proto string, family uint8) ([]socket, error) {
	var err error
	for range 3 {
		var s []socket
		if s, err = dump(proto, family); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return s, err
		}
	}
	return nil, err
}

// Watch calls changed with the answer of Listening for want() at once and
// then whenever it differs from the last one reported, checking every
// period; want is called before each check, so ports added or removed are
// followed. It returns nil when ctx ends, or the error of a check that
// failed.
func Watch(ctx context.Context, want func() []Port, every time.Duration, changed func(map[Port]bool)) error {
	return WatchExcept(ctx, func() []Want { return rootOnly(want()) }, nil, every, changed)
}

// WatchExcept is Watch with ListeningExcept: each wanted port's users'
// sockets count, and except, when not nil, is called before each check for
// the addresses whose sockets do not count.
func WatchExcept(ctx context.Context, want func() []Want, except func() []netip.Addr, every time.Duration, changed func(map[Port]bool)) error {
	if every <= 0 {
		return fmt.Errorf("sockwatch: period %v must be positive", every)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var last map[Port]bool
	for {
		var ex []netip.Addr
		if except != nil {
			ex = except()
		}
		now, err := ListeningExcept(want(), ex)
		if err != nil {
			return err
		}
		if last == nil || !maps.Equal(now, last) {
			last = now
			changed(maps.Clone(now))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
