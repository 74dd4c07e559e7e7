package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// TCP proxies the connections a listener accepts to backends.
type TCP struct {
	ln     *net.TCPListener
	picker Picker
	o      Options
	conns  *table

	mu     sync.Mutex // orders wg.Add against Close's wg.Wait
	closed bool
	wg     sync.WaitGroup
}

// NewTCP returns a proxy for the connections ln accepts; Serve runs it.
func NewTCP(ln *net.TCPListener, p Picker, o Options) *TCP {
	o = o.withDefaults()
	return &TCP{ln: ln, picker: p, o: o, conns: newTable(o.Budget)}
}

// Addr is the listener's address.
func (p *TCP) Addr() net.Addr { return p.ln.Addr() }

// Active is the number of connections in progress.
func (p *TCP) Active() int { return p.conns.len() }

// Serve accepts connections until Close; it then returns nil.
func (p *TCP) Serve() error {
	var delay time.Duration
	for {
		c, err := p.ln.AcceptTCP()
		if err != nil {
			if p.isClosed() {
				return nil
			}
			if !temporary(err) {
				return prefix(err)
			}
			// Out of descriptors or memory: wait a little, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.o.Log.WithError(err).Warn("proxy: accept")
			time.Sleep(delay)
			continue
		}
		delay = 0
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			reset(c)
			return nil
		}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.handle(c)
	}
}

func (p *TCP) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// temporary reports accept errors worth retrying.
func temporary(err error) bool {
	for _, e := range []error{unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM, unix.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Close stops accepting, resets every connection in progress and waits
// for them to end. lvsd calls it when the director loses its lease.
func (p *TCP) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	for _, abort := range p.conns.close() {
		abort()
	}
	p.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return prefix(err)
	}
	return nil
}

// DropBackend resets at once every connection to backend (its client sees
// a reset, not a hang) and returns how many there were. lvsd calls it when
// the backend left the pool because its node died or it stopped serving.
func (p *TCP) DropBackend(backend netip.AddrPort) int {
	aborts := p.conns.drop(unmap(backend))
	for _, abort := range aborts {
		abort()
	}
	return len(aborts)
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// reset closes c with an RST (SO_LINGER 0), so that the peer's next read
// or write fails at once.
func reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

// conn is one proxied connection: the client's, and the backend's once
// dialled; abort may come from another goroutine at any time.
type conn struct {
	client *net.TCPConn
	cancel context.CancelFunc // the dial

	mu      sync.Mutex
	backend *net.TCPConn
	aborted bool
}

func (c *conn) abort() {
	c.mu.Lock()
	c.aborted = true
	b := c.backend
	c.mu.Unlock()
	c.cancel()
	reset(c.client)
	if b != nil {
		reset(b)
	}
}

// setBackend records the dialled backend connection, or resets it if the
// connection was aborted meanwhile.
func (c *conn) setBackend(b *net.TCPConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted {
		reset(b)
		return false
	}
	c.backend = b
	return true
}

func (p *TCP) handle(client *net.TCPConn) {
	defer p.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &conn{client: client, cancel: cancel}
	id, ok := p.conns.add(c.abort)
	if !ok {
		reset(client) // the budget is spent, or closing
		return
	}
	defer p.conns.remove(id)

	from := addrPort(client.RemoteAddr())
	backend, done := p.connect(ctx, id, c, from)
	if backend == nil {
		return
	}
	defer done()
	if p.o.ProxyProtocol {
		if err := p.sendHeader(backend, from, addrPort(client.LocalAddr())); err != nil {
			p.o.Log.WithError(err).Warn("proxy: PROXY header")
			c.abort()
			return
		}
	}
	pipe(client, backend, c.abort)
}

// connect picks a backend and dials it, trying another pick when a dial
// fails. On failure the client has been reset and every done called.
func (p *TCP) connect(ctx context.Context, id uint64, c *conn, from netip.AddrPort) (*net.TCPConn, func()) {
	for range dialAttempts {
		addr, done, ok := p.conns.pick(id, p.picker, from)
		if !ok {
			reset(c.client) // no backend, or aborted
			return nil, nil
		}
		b, err := p.dial(ctx, unmap(addr))
		if err == nil {
			if !c.setBackend(b) {
				done() // aborted while dialling
				return nil, nil
			}
			return b, done
		}
		done()
		if ctx.Err() != nil {
			return nil, nil // aborted: abort reset the client
		}
		p.o.Log.WithError(err).WithField("backend", addr).Warn("proxy: dial")
		p.conns.unpick(id)
	}
	reset(c.client)
	return nil, nil
}

// sendHeader writes the PROXY v2 header before anything of the client's.
func (p *TCP) sendHeader(b *net.TCPConn, client, dst netip.AddrPort) error {
	h, err := proxyHeader("tcp", client, dst)
	if err != nil {
		return err
	}
	if err := b.SetWriteDeadline(time.Now().Add(p.o.DialTimeout)); err != nil {
		return prefix(err)
	}
	if _, err := b.Write(h); err != nil {
		return prefix(err)
	}
	if err := b.SetWriteDeadline(time.Time{}); err != nil {
		return prefix(err)
	}
	return nil
}

// pipe copies both ways until both ends have closed their side; an end's
// half-close is passed on (CloseWrite) and an error either way aborts both
// (resets), so neither side hangs. copyStream moves the bytes.
func pipe(client, backend *net.TCPConn, abort func()) {
	up := make(chan struct{})
	go func() {
		defer close(up)
		copyHalf(backend, client, abort)
	}()
	copyHalf(client, backend, abort)
	<-up
	_ = client.Close()
	_ = backend.Close()
}

func copyHalf(dst, src *net.TCPConn, abort func()) {
	err := copyStream(dst, src)
	if err == nil {
		err = dst.CloseWrite()
	}
	if err != nil {
		abort()
	}
}

// dial connects to a backend with keepalive and TCP_USER_TIMEOUT, so a
// backend that dies without a reset is noticed within seconds.
func (p *TCP) dial(ctx context.Context, addr netip.AddrPort) (*net.TCPConn, error) {
	d := net.Dialer{
		Timeout: p.o.DialTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     p.o.KeepAlive,
			Interval: p.o.KeepAlive,
			Count:    3,
		},
		Control: userTimeout(p.o.UserTimeout),
	}
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, prefix(err)
	}
	return c.(*net.TCPConn), nil
}

func userTimeout(d time.Duration) func(string, string, syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
		})
		if err != nil {
			return err
		}
		return serr
	}
}
