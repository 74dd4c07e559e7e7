// Package proxy is lvsd's user-space data plane on the director, for
// kernels without IPVS: a TCP proxy that copies between two net.TCPConn
// (small messages by read and write through a pooled buffer, bulk streams
// by io.Copy, which Go splices in the kernel) and a UDP proxy with one
// flow per client. The backend of each connection or flow comes from a Picker
// (the pool's scheduler); the client's address can be passed on with a
// PROXY protocol v2 header. DropBackend ends at once what goes to a
// backend that died, so clients fail fast instead of hanging, and dial
// timeouts, TCP keepalive and TCP_USER_TIMEOUT notice a dead backend the
// pool has not dropped yet. Every connection and flow takes a unit of one
// Budget shared by all the proxies of the daemon, sized under its unit's
// LimitNOFILE and MemoryMax, with a smaller share for UDP flows and a cap
// per client address, so that datagrams from spoofed sources cannot fill
// the daemon's memory.
package proxy

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Picker chooses the backend of a new connection or flow from the client's
// address. done is called exactly once, when that connection or flow ends
// (however it ends), so that least-connections counts stay right; ok is
// false when there is no backend. Pick is called with a lock of the proxy
// held and must not call back into it.
type Picker interface {
	Pick(client netip.AddrPort) (backend netip.AddrPort, done func(), ok bool)
}

// Options tune a proxy; the zero value takes the defaults below.
type Options struct {
	// ProxyProtocol sends the backend a PROXY protocol v2 header with the
	// client's address and the address it connected to: once at the start
	// of a TCP connection, before every UDP datagram (as the protocol
	// requires for datagrams).
	ProxyProtocol bool
	// DialTimeout bounds a TCP connection to a backend (default 1 s).
	DialTimeout time.Duration
	// KeepAlive is the idle time and the interval of TCP keepalive probes
	// on backend connections; three unanswered probes end one (default 1 s).
	KeepAlive time.Duration
	// UserTimeout is TCP_USER_TIMEOUT on backend connections: data a
	// backend has not acknowledged for that long ends the connection
	// (default 3 s).
	UserTimeout time.Duration
	// Budget bounds the TCP connections and UDP flows of every proxy
	// that shares it: a connection beyond it is reset at once, a datagram
	// of a new flow beyond it dropped. nil is a budget of DefaultLimits
	// of the proxy's own.
	Budget *Budget
	// FlowIdle ends a UDP flow that carried nothing either way for that
	// long (default 30 s).
	FlowIdle time.Duration
	// Log receives one line per failure worth a look; nil discards them.
	Log logrus.FieldLogger
}

// The defaults of Options.
const (
	DefaultDialTimeout = time.Second
	DefaultKeepAlive   = time.Second
	DefaultUserTimeout = 3 * time.Second
	DefaultFlowIdle    = 30 * time.Second
)

// dialAttempts is how many backends a new TCP connection tries before it
// is reset: a backend that refuses is usually one the pool is about to
// drop.
const dialAttempts = 3

func (o Options) withDefaults() Options {
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.UserTimeout <= 0 {
		o.UserTimeout = DefaultUserTimeout
	}
	if o.Budget == nil {
		o.Budget = NewBudget(DefaultLimits)
	}
	if o.FlowIdle <= 0 {
		o.FlowIdle = DefaultFlowIdle
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		o.Log = l
	}
	return o
}

// freebind lets the director bind the VIP before (or while) the address is
// on its interface, so a proxy can be opened ahead of a takeover.
func freebind(network, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if network == "tcp6" || network == "udp6" {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// ListenTCP opens the director's TCP socket for addr (normally VIP:port),
// with IP_FREEBIND so the VIP need not be on the interface yet.
func ListenTCP(addr netip.AddrPort) (*net.TCPListener, error) {
	lc := net.ListenConfig{Control: freebind}
	l, err := lc.Listen(contextBackground(), tcpNetwork(addr), addr.String())
	if err != nil {
		return nil, prefix(err)
	}
	return l.(*net.TCPListener), nil
}

// ListenUDP opens the director's UDP socket for addr, with IP_FREEBIND.
// Bind it to the VIP itself, not the wildcard: replies go out from the
// address the socket is bound to, and clients expect them from the VIP.
func ListenUDP(addr netip.AddrPort) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: freebind}
	network := "udp4"
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		network = "udp6"
	}
	c, err := lc.ListenPacket(contextBackground(), network, addr.String())
	if err != nil {
		return nil, prefix(err)
	}
	return c.(*net.UDPConn), nil
}

func tcpNetwork(addr netip.AddrPort) string {
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		return "tcp6"
	}
	return "tcp4"
}

// Proxy is one port's proxy, TCP or UDP, as lvsd's server drives it:
// Serve in a goroutine, DropBackend when a backend leaves the pool, Close
// when the port is removed or the director's lease is gone.
type Proxy interface {
	Serve() error
	DropBackend(backend netip.AddrPort) int
	Close() error
	Addr() net.Addr
}

var (
	_ Proxy = (*TCP)(nil)
	_ Proxy = (*UDP)(nil)
)

// Listen opens proto ("tcp" or "udp") on addr (VIP:port) and returns its
// proxy, not yet serving.
func Listen(proto string, addr netip.AddrPort, p Picker, o Options) (Proxy, error) {
	switch proto {
	case "tcp":
		l, err := ListenTCP(addr)
		if err != nil {
			return nil, err
		}
		return NewTCP(l, p, o), nil
	case "udp":
		c, err := ListenUDP(addr)
		if err != nil {
			return nil, err
		}
		return NewUDP(c, p, o), nil
	}
	return nil, fmt.Errorf("proxy: protocol %q: must be tcp or udp", proto)
}
