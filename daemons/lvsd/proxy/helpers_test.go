package proxy

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testPicker hands out its backends in turn and checks that every done is
// called exactly once.
type testPicker struct {
	t *testing.T

	mu       sync.Mutex
	backends []netip.AddrPort
	next     int
	picks    int
	open     int
	done     chan netip.AddrPort
}

func newPicker(t *testing.T, backends ...netip.AddrPort) *testPicker {
	return &testPicker{t: t, backends: backends, done: make(chan netip.AddrPort, 64)}
}

func (p *testPicker) Pick(netip.AddrPort) (netip.AddrPort, func(), bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.backends) == 0 {
		return netip.AddrPort{}, nil, false
	}
	b := p.backends[p.next%len(p.backends)]
	p.next++
	p.picks++
	p.open++
	var once sync.Once
	called := false
	return b, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if called {
			p.t.Errorf("done of %s called twice", b)
		}
		called = true
		once.Do(func() { p.open-- })
		p.done <- b
	}, true
}

func (p *testPicker) setBackends(b ...netip.AddrPort) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.backends, p.next = b, 0
}

func (p *testPicker) stats() (picks, open int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.picks, p.open
}

// waitDone waits for one done call and returns its backend.
func (p *testPicker) waitDone(t *testing.T) netip.AddrPort {
	t.Helper()
	select {
	case b := <-p.done:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("no done within 5s")
		return netip.AddrPort{}
	}
}

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

func ap(a net.Addr) netip.AddrPort { return addrPort(a) }

// startTCP runs a TCP proxy on loopback until the test ends.
func startTCP(t *testing.T, p Picker, o Options) *TCP {
	t.Helper()
	ln, err := ListenTCP(loopback)
	if err != nil {
		t.Fatal(err)
	}
	px := NewTCP(ln, p, o)
	served := make(chan error, 1)
	go func() { served <- px.Serve() }()
	t.Cleanup(func() {
		if err := px.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return px
}

// backend is a TCP server on loopback running serve for each connection.
func backend(t *testing.T, serve func(net.Conn)) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1) // the accept loop: its Adds then never race the cleanup's Wait
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ap(l.Addr())
}

func echo(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// deadPort is a loopback port nothing listens on.
func deadPort(t *testing.T) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ap(l.Addr())
	l.Close()
	return a
}

// isReset: the proxy ends connections it gives up on with an RST, so the
// client's read fails with ECONNRESET, neither a clean EOF nor a timeout.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// waitFor polls cond until it holds, failing after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 5s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
