package proxy

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxDatagram is the largest UDP payload there is.
const maxDatagram = 64 << 10

// replyBufs are the buffers flows read their backends' replies into, each
// only while a reply is there to read.
var replyBufs = sync.Pool{New: func() any { b := make([]byte, maxDatagram); return &b }}

// UDP proxies the datagrams a socket receives to backends, with one flow
// per client address: a connected socket toward the client's backend and a
// goroutine that sends the backend's replies back from the proxy's socket.
// A flow ends after FlowIdle without traffic, when its backend refuses
// (ICMP port unreachable: the next datagram picks again), on DropBackend
// and on Close. Each flow takes a unit of the Budget; a new client's
// datagram beyond it (no unit, no flow or none of its source address
// left), or with no backend, is dropped and counted. A flow holds no
// buffer while it waits: a reply is read into one of a pool shared by
// every flow, so that flows from spoofed sources cost no 64 KiB each.
type UDP struct {
	pc     *net.UDPConn
	picker Picker
	o      Options
	dst    netip.AddrPort // the socket's address, for PROXY headers

	mu     sync.Mutex
	flows  map[netip.AddrPort]*flow
	closed bool
	wg     sync.WaitGroup

	dropped atomic.Uint64
	sendBuf []byte // Serve's only
}

type flow struct {
	client  netip.AddrPort
	backend netip.AddrPort
	conn    *net.UDPConn
	header  []byte // the PROXY v2 header before each datagram, or nil
	done    func()
	last    atomic.Int64 // unix nanoseconds of the last datagram either way
	once    sync.Once
}

func (f *flow) touch() { f.last.Store(time.Now().UnixNano()) }

// NewUDP returns a proxy for the datagrams pc receives; Serve runs it.
func NewUDP(pc *net.UDPConn, p Picker, o Options) *UDP {
	o = o.withDefaults()
	var dst netip.AddrPort
	if pc != nil {
		dst = addrPort(pc.LocalAddr())
	}
	return &UDP{
		pc: pc, picker: p, o: o, dst: dst,
		flows:   map[netip.AddrPort]*flow{},
		sendBuf: make([]byte, 0, maxDatagram+64),
	}
}

// Addr is the socket's address.
func (p *UDP) Addr() net.Addr { return p.pc.LocalAddr() }

// Flows is the number of flows.
func (p *UDP) Flows() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.flows)
}

// Dropped is the number of datagrams dropped because the flow table was
// full or no backend was offered.
func (p *UDP) Dropped() uint64 { return p.dropped.Load() }

// Serve forwards datagrams until Close; it then returns nil.
func (p *UDP) Serve() error {
	buf := make([]byte, maxDatagram)
	for {
		n, client, err := p.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if p.isClosed() {
				return nil
			}
			if temporary(err) {
				p.o.Log.WithError(err).Warn("proxy: udp read")
				continue
			}
			return prefix(err)
		}
		p.forward(unmap(client), buf[:n])
	}
}

func (p *UDP) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// forward sends one client datagram on its flow, opening one if needed; a
// flow whose backend refused is replaced once.
func (p *UDP) forward(client netip.AddrPort, payload []byte) {
	for range 2 {
		f := p.flow(client)
		if f == nil {
			p.dropped.Add(1)
			return
		}
		f.touch()
		msg := payload
		if f.header != nil {
			msg = append(append(p.sendBuf[:0], f.header...), payload...)
		}
		_, err := f.conn.Write(msg)
		if err == nil {
			return
		}
		p.end(f)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			p.o.Log.WithError(err).WithField("backend", f.backend).Warn("proxy: udp send")
			return
		}
	}
}

// flow returns client's flow, opening it with a new pick if there is none
// and the table has room; nil means drop the datagram.
func (p *UDP) flow(client netip.AddrPort) *flow {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if f, ok := p.flows[client]; ok {
		return f
	}
	if !p.o.Budget.takeFlow(client.Addr()) {
		return nil
	}
	backend, picked, ok := p.picker.Pick(client)
	if !ok {
		p.o.Budget.endFlow(client.Addr())
		return nil
	}
	backend = unmap(backend)
	done := func() {
		picked()
		p.o.Budget.endFlow(client.Addr())
	}
	f := &flow{client: client, backend: backend, done: done}
	if p.o.ProxyProtocol {
		h, err := proxyHeader("udp", client, p.dst)
		if err != nil {
			p.o.Log.WithError(err).Warn("proxy: PROXY header")
			done()
			return nil
		}
		f.header = h
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(backend))
	if err != nil {
		p.o.Log.WithError(err).WithField("backend", backend).Warn("proxy: udp dial")
		done()
		return nil
	}
	f.conn = conn
	f.touch()
	p.flows[client] = f
	p.wg.Add(1)
	go p.replies(f)
	return f
}

// replies sends the backend's datagrams back to the client until the flow
// is idle for FlowIdle, fails, or is ended. It waits for a datagram
// without a buffer and takes one of replyBufs only to read it.
func (p *UDP) replies(f *flow) {
	defer p.wg.Done()
	defer p.end(f)
	rc, err := f.conn.SyscallConn()
	if err != nil {
		return
	}
	for {
		_ = f.conn.SetReadDeadline(time.Unix(0, f.last.Load()).Add(p.o.FlowIdle))
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			bp := replyBufs.Get().(*[]byte)
			defer replyBufs.Put(bp)
			var n int
			n, rerr = readDatagram(int(fd), *bp)
			if errors.Is(rerr, syscall.EAGAIN) {
				return false // nothing yet: wait, without the buffer
			}
			if rerr == nil {
				f.touch()
				if _, err := p.pc.WriteToUDPAddrPort((*bp)[:n], f.client); err != nil && !p.isClosed() {
					p.o.Log.WithError(err).WithField("client", f.client).Warn("proxy: udp reply")
				}
			}
			return true
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, f.last.Load())) < p.o.FlowIdle {
				continue // the client sent meanwhile
			}
			return
		}
	}
}

// readDatagram reads one datagram of a non-blocking socket, retrying
// when a signal interrupts it.
func readDatagram(fd int, buf []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		return n, err
	}
}

// end ends a flow once: out of the table, its socket closed, done called.
func (p *UDP) end(f *flow) {
	f.once.Do(func() {
		p.mu.Lock()
		if p.flows[f.client] == f {
			delete(p.flows, f.client)
		}
		p.mu.Unlock()
		_ = f.conn.Close()
		f.done()
	})
}

// DropBackend ends every flow to backend at once and returns how many
// there were; the clients' next datagrams pick again.
func (p *UDP) DropBackend(backend netip.AddrPort) int {
	backend = unmap(backend)
	p.mu.Lock()
	var gone []*flow
	for c, f := range p.flows {
		if f.backend == backend {
			gone = append(gone, f)
			delete(p.flows, c)
		}
	}
	p.mu.Unlock()
	for _, f := range gone {
		p.end(f)
	}
	return len(gone)
}

// Close stops the proxy, ends every flow and waits for them.
func (p *UDP) Close() error {
	p.mu.Lock()
	p.closed = true
	gone := make([]*flow, 0, len(p.flows))
	for c, f := range p.flows {
		gone = append(gone, f)
		delete(p.flows, c)
	}
	p.mu.Unlock()
	err := p.pc.Close()
	for _, f := range gone {
		p.end(f)
	}
	p.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return prefix(err)
	}
	return nil
}
