package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"golang.org/x/sys/unix"
)

func dialProxy(t *testing.T, px *TCP) *net.TCPConn {
	t.Helper()
	c, err := net.DialTCP("tcp4", nil, px.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectReset connects to px and expects to be reset, at connect (the
// reset can beat connect's check on loopback) or at the first read.
func expectReset(t *testing.T, px *TCP, why string) {
	t.Helper()
	c, err := net.DialTCP("tcp4", nil, px.Addr().(*net.TCPAddr))
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("%s: dial: %v, want a reset", why, err)
		}
		return
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !isReset(err) {
		t.Fatalf("%s: read: %v, want a reset", why, err)
	}
}

func TestTCPEcho(t *testing.T) {
	b := backend(t, echo)
	pk := newPicker(t, b)
	px := startTCP(t, pk, Options{})
	c := dialProxy(t, px)
	msg := bytes.Repeat([]byte("openssi "), 64<<10) // 512 KiB, more than a socket buffer
	go func() {
		_, _ = c.Write(msg)
		_ = c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echoed %d bytes, sent %d", len(got), len(msg))
	}
	if d := pk.waitDone(t); d != b {
		t.Fatalf("done for %s, want %s", d, b)
	}
	if picks, open := pk.stats(); picks != 1 || open != 0 {
		t.Fatalf("picks %d open %d, want 1 and 0", picks, open)
	}
}

func TestTCPProxyProtocolV2(t *testing.T) {
	headers := make(chan *proxyproto.Header, 1)
	b := backend(t, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		h, err := proxyproto.Read(r)
		if err != nil {
			t.Errorf("backend: %v", err)
			return
		}
		headers <- h
		line, _ := r.ReadString('\n')
		_, _ = c.Write([]byte("got " + line))
	})
	px := startTCP(t, newPicker(t, b), Options{ProxyProtocol: true})
	c := dialProxy(t, px)
	if _, err := c.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || reply != "got hello\n" {
		t.Fatalf("reply %q, %v", reply, err)
	}
	h := <-headers
	if h.Version != 2 || h.Command != proxyproto.PROXY || h.TransportProtocol != proxyproto.TCPv4 {
		t.Fatalf("header %+v", h)
	}
	src, dst, ok := h.TCPAddrs()
	if !ok || ap(src) != ap(c.LocalAddr()) || ap(dst) != ap(px.Addr()) {
		t.Fatalf("header says %v -> %v, want %v -> %v", src, dst, c.LocalAddr(), px.Addr())
	}
}

func TestTCPNoBackendResets(t *testing.T) {
	px := startTCP(t, newPicker(t), Options{})
	expectReset(t, px, "no backend")
}

// TestTCPDropBackendFailsFast: a client whose backend hangs (accepts, never
// answers) is reset as soon as the backend is dropped, and the backend's
// side is closed too.
func TestTCPDropBackendFailsFast(t *testing.T) {
	backendGone := make(chan struct{})
	accepted := make(chan struct{})
	hang := backend(t, func(c net.Conn) {
		defer c.Close()
		close(accepted)
		_, _ = io.Copy(io.Discard, c) // until the proxy closes its side
		close(backendGone)
	})
	other := backend(t, echo)
	pk := newPicker(t, hang, other)
	px := startTCP(t, pk, Options{})
	c := dialProxy(t, px)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	// Once the backend has accepted, the proxy has recorded the pick
	// (before dialling), so DropBackend finds the connection.
	<-accepted
	if n := px.DropBackend(other); n != 0 {
		t.Fatalf("DropBackend(other) = %d, want 0", n)
	}
	if n := px.DropBackend(hang); n != 1 {
		t.Fatalf("DropBackend(hang) = %d, want 1", n)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if !isReset(err) {
		t.Fatalf("client read after DropBackend: %v, want a reset", err)
	}
	<-backendGone
	pk.waitDone(t)
	if _, open := pk.stats(); open != 0 {
		t.Fatalf("%d picks without done", open)
	}
	// A new connection goes to the other backend.
	pk.setBackends(other)
	c2 := dialProxy(t, px)
	if _, err := c2.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c2, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
}

func TestTCPDialFailureTriesTheNextBackend(t *testing.T) {
	dead := deadPort(t)
	live := backend(t, echo)
	pk := newPicker(t, dead, live)
	px := startTCP(t, pk, Options{})
	c := dialProxy(t, px)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("through the second backend: %v", err)
	}
	if d := pk.waitDone(t); d != dead {
		t.Fatalf("first done for %s, want the dead %s", d, dead)
	}
}

func TestTCPEveryBackendDeadResets(t *testing.T) {
	pk := newPicker(t, deadPort(t))
	px := startTCP(t, pk, Options{})
	expectReset(t, px, "every backend dead")
	for range dialAttempts {
		pk.waitDone(t)
	}
	if picks, open := pk.stats(); picks != dialAttempts || open != 0 {
		t.Fatalf("picks %d open %d, want %d and 0", picks, open, dialAttempts)
	}
}

func TestTCPMaxConns(t *testing.T) {
	b := backend(t, echo)
	px := startTCP(t, newPicker(t, b), Options{Budget: NewBudget(Limits{Units: 1})})
	c1 := dialProxy(t, px)
	if _, err := c1.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c1, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	expectReset(t, px, "second connection over a budget of 1")
	// The first one still works.
	if _, err := c1.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c1, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
}

// TestTCPHalfClose: the client's half-close reaches the backend, which
// still answers after it.
func TestTCPHalfClose(t *testing.T) {
	b := backend(t, func(c net.Conn) {
		defer c.Close()
		req, err := io.ReadAll(c) // until the client's FIN
		if err != nil {
			return
		}
		_, _ = c.Write(append([]byte("len "), byte('0'+len(req))))
	})
	px := startTCP(t, newPicker(t, b), Options{})
	c := dialProxy(t, px)
	if _, err := c.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "len 3" {
		t.Fatalf("reply %q, %v", got, err)
	}
}

func TestTCPCloseResetsEveryConnection(t *testing.T) {
	b := backend(t, echo)
	ln, err := ListenTCP(loopback)
	if err != nil {
		t.Fatal(err)
	}
	pk := newPicker(t, b)
	px := NewTCP(ln, pk, Options{})
	served := make(chan error, 1)
	go func() { served <- px.Serve() }()
	var cs []*net.TCPConn
	for range 3 {
		c := dialProxy(t, px)
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	if err := px.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve after Close: %v", err)
	}
	for _, c := range cs {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !isReset(err) {
			t.Fatalf("read after Close: %v, want a reset", err)
		}
	}
	if _, open := pk.stats(); open != 0 {
		t.Fatalf("%d picks without done after Close", open)
	}
	if px.Active() != 0 {
		t.Fatalf("%d active after Close", px.Active())
	}
}

// TestDialKeepAliveAndUserTimeout: backend connections carry keepalive and
// TCP_USER_TIMEOUT, which notice a backend that dies without a reset.
func TestDialKeepAliveAndUserTimeout(t *testing.T) {
	b := backend(t, echo)
	px := NewTCP(nil, newPicker(t), Options{KeepAlive: 2 * time.Second, UserTimeout: 1500 * time.Millisecond})
	c, err := px.dial(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ka, idle, intvl, cnt, uto int
	_ = raw.Control(func(fd uintptr) {
		ka, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		idle, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		intvl, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		cnt, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
		uto, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	})
	if ka != 1 || idle != 2 || intvl != 2 || cnt != 3 || uto != 1500 {
		t.Fatalf("keepalive %d idle %d intvl %d cnt %d user timeout %d", ka, idle, intvl, cnt, uto)
	}
}

func TestListenTCPFreebind(t *testing.T) {
	// An address this host does not have: without IP_FREEBIND bind fails.
	l, err := ListenTCP(netip.MustParseAddrPort("192.0.2.77:0"))
	if err != nil {
		t.Fatalf("ListenTCP on an absent address: %v", err)
	}
	l.Close()
}

// TestTCPIPv6 runs the proxy on ::1 toward an IPv6 backend, with the
// PROXY header's TCPv6 addresses checked by the backend.
func TestTCPIPv6(t *testing.T) {
	bl, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer bl.Close()
	got := make(chan string, 1)
	go func() {
		c, err := bl.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		h, err := proxyproto.Read(bufio.NewReader(c))
		if err != nil {
			got <- err.Error()
			return
		}
		src, dst, _ := h.TCPAddrs()
		v6 := map[bool]string{true: "TCPv6", false: "not TCPv6"}[h.TransportProtocol == proxyproto.TCPv6]
		got <- v6 + " " + src.String() + " " + dst.String()
	}()
	ln, err := ListenTCP(netip.MustParseAddrPort("[::1]:0"))
	if err != nil {
		t.Fatal(err)
	}
	px := NewTCP(ln, newPicker(t, ap(bl.Addr())), Options{ProxyProtocol: true})
	served := make(chan error, 1)
	go func() { served <- px.Serve() }()
	defer func() {
		if err := px.Close(); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	c, err := net.Dial("tcp6", px.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := "TCPv6 " + c.LocalAddr().String() + " " + px.Addr().String()
	if h := <-got; h != want {
		t.Fatalf("backend read %q, want %q", h, want)
	}
}

// TestTCPSmallThenBulk: a keep-alive exchange of small messages, each
// answered before the next is sent (the read and write path of
// copyStream), then a bulk transfer on the same connection (the switch to
// io.Copy), then a half-close: every byte arrives, in order, and the end.
func TestTCPSmallThenBulk(t *testing.T) {
	b := backend(t, echo)
	px := startTCP(t, newPicker(t, b), Options{})
	c := dialProxy(t, px)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := range 200 {
		msg := fmt.Sprintf("GET /%d HTTP/1.1\r\n", i)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("message %d: echoed %q, %v; want %q", i, got, err, msg)
		}
	}
	bulk := bytes.Repeat([]byte("0123456789abcdef"), 3*bufSize/16+5) // three buffers and a bit
	go func() {
		_, _ = c.Write(bulk)
		_ = c.CloseWrite()
	}()
	got, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bulk) {
		t.Fatalf("bulk: echoed %d bytes, sent %d", len(got), len(bulk))
	}
}
