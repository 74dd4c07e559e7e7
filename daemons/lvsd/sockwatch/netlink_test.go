package sockwatch

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/openssi/openssi/internal/roottest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNewNetns moves the calling goroutine, for good, onto a thread in a new
// network namespace with only lo (up), and returns that namespace. The
// thread is never unlocked, so it ends with the goroutine and the
// namespace with the last of it.
func inNewNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	roottest.Need(t)
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	h, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func port(t *testing.T, a net.Addr) uint16 {
	t.Helper()
	_, p, err := net.SplitHostPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(n)
}

func mustListening(t *testing.T, want []Port) map[Port]bool {
	t.Helper()
	got, err := Listening(want)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestListeningRealSockets listens and closes real sockets in a throw-away
// network namespace and reads them back through sock_diag.
func TestListeningRealSockets(t *testing.T) {
	inNewNetns(t)

	tl, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp := Port{"tcp", port(t, tl.Addr())}
	t6, err := net.Listen("tcp6", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp6 := Port{"tcp", port(t, t6.Addr())}
	ul, err := net.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	udp := Port{"udp", port(t, ul.LocalAddr())}
	lol, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	loop := Port{"tcp", port(t, lol.Addr())}
	defer lol.Close()
	// A connection to the listener: its accepted and connecting sockets
	// are ESTABLISHED and must not make their ports count.
	c, err := net.Dial("tcp", tl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := Port{"tcp", port(t, c.LocalAddr())}
	// The TCP listener's number over UDP: nothing serves it.
	udpOfTCP := Port{"udp", tcp.Num}

	want := []Port{tcp, tcp6, udp, loop, udpOfTCP}
	exp := map[Port]bool{tcp: true, tcp6: true, udp: true, loop: false, udpOfTCP: false}
	// The client's ephemeral port may be the IPv6-only listener's number
	// (an IPv4 socket does not conflict with it); then it proves nothing.
	if _, taken := exp[client]; !taken {
		want = append(want, client)
		exp[client] = false
	}
	got := mustListening(t, want)
	for p, v := range exp {
		if got[p] != v {
			t.Errorf("%s: listening %v, want %v (all: %v)", p, got[p], v, got)
		}
	}

	tl.Close()
	t6.Close()
	ul.Close()
	got = mustListening(t, want)
	for _, p := range []Port{tcp, tcp6, udp} {
		if got[p] {
			t.Errorf("%s still listening after close: %v", p, got)
		}
	}
}

// TestListeningExceptVIP: a listener on a VIP (the director's own proxy)
// counts for Listening but not for ListeningExcept with that VIP.
func TestListeningExceptVIP(t *testing.T) {
	inNewNetns(t)
	// The VIP on lo of the throw-away namespace: a local address that is
	// not a loopback one.
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := netlink.ParseAddr("192.0.2.10/32")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(lo, addr); err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParseAddr("192.0.2.10")
	l, err := net.Listen("tcp4", "192.0.2.10:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := Port{"tcp", port(t, l.Addr())}
	if got := mustListening(t, []Port{p}); !got[p] {
		t.Fatalf("Listening: %v, want %s true", got, p)
	}
	got, err := ListeningExcept([]Want{{Port: p}}, []netip.Addr{vip})
	if err != nil {
		t.Fatal(err)
	}
	if got[p] {
		t.Fatalf("ListeningExcept the VIP: %v, want %s false", got, p)
	}
}

func TestListeningRejectsUnknownProtocol(t *testing.T) {
	if _, err := Listening([]Port{{"sctp", 80}}); err == nil {
		t.Fatal("sctp/80 accepted")
	}
}

// TestWatchReportsListenAndClose: Watch reports a listen and a close
// within one period (here 20 ms; the test allows a second).
func TestWatchReportsListenAndClose(t *testing.T) {
	h := inNewNetns(t)

	// A free port number, found by listening on it once.
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	p := Port{"tcp", port(t, l.Addr())}
	l.Close()

	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan map[Port]bool, 16)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // for good: the thread joins the test's namespace
		if err := netns.Set(h); err != nil {
			done <- err
			return
		}
		done <- Watch(ctx, func() []Port { return []Port{p} }, 20*time.Millisecond,
			func(m map[Port]bool) { changes <- m })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}()

	next := func(want bool) {
		t.Helper()
		select {
		case m := <-changes:
			if m[p] != want {
				t.Fatalf("change %v, want %s %v", m, p, want)
			}
		case err := <-done:
			t.Fatalf("Watch ended: %v", err)
		case <-time.After(time.Second):
			t.Fatalf("no change to %s=%v within 1s", p, want)
		}
	}
	next(false) // the first answer is always reported
	l, err = net.Listen("tcp", ":"+strconv.Itoa(int(p.Num)))
	if err != nil {
		t.Fatal(err)
	}
	next(true)
	l.Close()
	next(false)
}

func TestWatchRejectsZeroPeriod(t *testing.T) {
	err := Watch(context.Background(), func() []Port { return nil }, 0, func(map[Port]bool) {})
	if err == nil {
		t.Fatal("period 0 accepted")
	}
}

// listenAs listens on a TCP port of the wildcard with a socket owned by
// uid: the kernel takes a socket's owner from the creating thread's fsuid,
// which is set on this (locked) thread only for the socket call.
func listenAs(t *testing.T, uid int) net.Listener {
	t.Helper()
	prev, _ := unix.SetfsuidRetUid(uid)
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	_ = unix.Setfsuid(prev)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestListeningOwnerRealSockets: a listener of uid 65534 (nobody) does not
// put a port into the answer unless the port lists that uid; root's does.
func TestListeningOwnerRealSockets(t *testing.T) {
	inNewNetns(t)
	l := listenAs(t, 65534)
	defer l.Close()
	p := Port{"tcp", port(t, l.Addr())}
	root, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	r := Port{"tcp", port(t, root.Addr())}

	for _, tt := range []struct {
		name string
		want []Want
		out  map[Port]bool
	}{
		{"nobody's listener, root only", []Want{{Port: p}, {Port: r}}, map[Port]bool{p: false, r: true}},
		{"nobody's listener, another user listed", []Want{{Port: p, UIDs: []uint32{1000}}}, map[Port]bool{p: false}},
		{"nobody's listener, nobody listed", []Want{{Port: p, UIDs: []uint32{65534}}}, map[Port]bool{p: true}},
	} {
		got, err := ListeningExcept(tt.want, nil)
		if err != nil {
			t.Fatal(err)
		}
		for q, v := range tt.out {
			if got[q] != v {
				t.Errorf("%s: %s listening %v, want %v", tt.name, q, got[q], v)
			}
		}
	}
	if got := mustListening(t, []Port{p}); got[p] {
		t.Errorf("Listening counts nobody's listener on %s", p)
	}
}
