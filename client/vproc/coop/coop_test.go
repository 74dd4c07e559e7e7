package coop

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	wire "github.com/openssi/openssi/daemons/vprocd/coop"
)

// fakeVprocd is vprocd's side of the protocol, in-process: it listens
// where OPENSSI_CHECKPOINT_SOCK says and speaks frames.
type fakeVprocd struct {
	t    *testing.T
	ln   net.Listener
	conn net.Conn
}

func newFake(t *testing.T, restore bool) *fakeVprocd {
	t.Helper()
	dir, err := os.MkdirTemp("", "coop")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	t.Setenv(wire.EnvSocket, path)
	if restore {
		t.Setenv(wire.EnvRestore, "1")
	}
	return &fakeVprocd{t: t, ln: ln}
}

// accept takes the program's connection and its Hello.
func (f *fakeVprocd) accept() {
	f.t.Helper()
	c, err := f.ln.Accept()
	if err != nil {
		f.t.Fatal(err)
	}
	f.conn = c
	f.t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := wire.ParseHello(f.read()); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeVprocd) send(fr wire.Frame) {
	f.t.Helper()
	if err := wire.Write(f.conn, fr, wire.Limits{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeVprocd) read() wire.Frame {
	f.t.Helper()
	fr, err := wire.Read(f.conn, wire.Limits{})
	if err != nil {
		f.t.Fatal(err)
	}
	return fr
}

func (f *fakeVprocd) expect(typ wire.Type) wire.Frame {
	f.t.Helper()
	fr := f.read()
	if fr.Type != typ {
		f.t.Fatalf("got %s %q, want %s", fr.Type, fr.Payload, typ)
	}
	return fr
}

// counter is a cooperative program: a count under a lock, which its
// checkpoint holds until Resume.
type counter struct {
	mu      sync.Mutex
	n       int
	out     []string
	resumed chan struct{}
}

func newCounter(n int) *counter { return &counter{n: n, resumed: make(chan struct{}, 1)} }

func (c *counter) program() Program {
	return Program{
		Checkpoint: func() ([]byte, error) {
			c.mu.Lock()
			return []byte(strconv.Itoa(c.n)), nil
		},
		Restore: func(b []byte) (err error) {
			c.n, err = strconv.Atoi(string(b))
			return err
		},
		Resume: func() {
			c.mu.Unlock()
			c.resumed <- struct{}{}
		},
	}
}

func (c *counter) step() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	c.out = append(c.out, strconv.Itoa(c.n))
}

type registered struct {
	s   *Session
	err error
}

func register(p Program) chan registered {
	ch := make(chan registered, 1)
	go func() {
		s, err := RegisterProgram(p)
		ch <- registered{s, err}
	}()
	return ch
}

func wait(t *testing.T, ch chan registered) registered {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Register did not return")
	}
	return registered{}
}

// TestMigrate moves a counter: the source checkpoints it at 3 and is
// ended (the move committed); the target starts with that state, waits
// for Resume, and counts on from 3: no gap, no repeat.
func TestMigrate(t *testing.T) {
	src := newCounter(0)
	fa := newFake(t, false)
	ch := register(src.program())
	fa.accept()
	fa.send(wire.Frame{Type: wire.Start})
	ra := wait(t, ch)
	if ra.err != nil {
		t.Fatal(ra.err)
	}
	if os.Getenv(wire.EnvSocket) != "" {
		t.Fatalf("%s still set for children", wire.EnvSocket)
	}
	for range 3 {
		src.step()
	}
	fa.send(wire.Frame{Type: wire.Checkpoint})
	state := fa.expect(wire.State).Payload
	if string(state) != "3" {
		t.Fatalf("state %q", state)
	}
	// The move commits: vprocd ends the source (here: closes).
	_ = fa.conn.Close()
	<-ra.s.Done()

	dst := newCounter(0)
	fb := newFake(t, true)
	ch = register(dst.program())
	fb.accept()
	fb.send(wire.Frame{Type: wire.State, Payload: state})
	fb.expect(wire.Restored)
	select {
	case <-ch:
		t.Fatal("Register returned before Resume")
	default:
	}
	fb.send(wire.Frame{Type: wire.Resume})
	rb := wait(t, ch)
	if rb.err != nil {
		t.Fatal(rb.err)
	}
	if os.Getenv(wire.EnvRestore) != "" {
		t.Fatalf("%s still set for children", wire.EnvRestore)
	}
	dst.step()
	out := append(src.out, dst.out...)
	if got := strings.Join(out, " "); got != "1 2 3 4" {
		t.Fatalf("output %q", got)
	}
	if err := rb.s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestFailedMove: the move fails after the checkpoint; vprocd says Resume
// and the program goes on where it stopped; a second checkpoint works.
func TestFailedMove(t *testing.T) {
	c := newCounter(7)
	f := newFake(t, false)
	ch := register(c.program())
	f.accept()
	f.send(wire.Frame{Type: wire.Start})
	r := wait(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	f.send(wire.Frame{Type: wire.Checkpoint})
	f.expect(wire.State)
	f.send(wire.Frame{Type: wire.Resume})
	<-c.resumed
	c.step()
	f.send(wire.Frame{Type: wire.Checkpoint})
	if st := f.expect(wire.State).Payload; string(st) != "8" {
		t.Fatalf("state %q", st)
	}
	f.send(wire.Frame{Type: wire.Resume})
	<-c.resumed
	_ = r.s.Close()
}

// TestErrors: a checkpoint or restore that fails, a state over the
// limit, and a vprocd that breaks the protocol are each answered with an
// Error frame that says why.
func TestErrors(t *testing.T) {
	t.Run("checkpoint fails", func(t *testing.T) {
		f := newFake(t, false)
		calls := 0
		ch := register(Program{
			Checkpoint: func() ([]byte, error) {
				calls++
				if calls == 1 {
					return nil, errors.New("holding a lock file")
				}
				return []byte("ok"), nil
			},
			Restore: func([]byte) error { return nil },
		})
		f.accept()
		f.send(wire.Frame{Type: wire.Start})
		r := wait(t, ch)
		f.send(wire.Frame{Type: wire.Checkpoint})
		if e := f.expect(wire.Error).Payload; string(e) != "holding a lock file" {
			t.Fatalf("error %q", e)
		}
		f.send(wire.Frame{Type: wire.Checkpoint})
		f.expect(wire.State)
		_ = r.s.Close()
	})
	t.Run("state over the limit", func(t *testing.T) {
		f := newFake(t, false)
		ch := register(Program{
			Checkpoint: func() ([]byte, error) { return []byte("12345"), nil },
			Restore:    func([]byte) error { return nil },
			Limits:     wire.Limits{State: 4},
		})
		f.accept()
		f.send(wire.Frame{Type: wire.Start})
		r := wait(t, ch)
		f.send(wire.Frame{Type: wire.Checkpoint})
		if e := f.expect(wire.Error).Payload; !strings.Contains(string(e), "over the limit") {
			t.Fatalf("error %q", e)
		}
		_ = r.s.Close()
	})
	t.Run("restore fails", func(t *testing.T) {
		f := newFake(t, true)
		ch := register(Program{
			Checkpoint: func() ([]byte, error) { return nil, nil },
			Restore:    func([]byte) error { return errors.New("state from a newer version") },
		})
		f.accept()
		f.send(wire.Frame{Type: wire.State, Payload: []byte("v9")})
		if e := f.expect(wire.Error).Payload; string(e) != "state from a newer version" {
			t.Fatalf("error %q", e)
		}
		if r := wait(t, ch); r.err == nil || !strings.Contains(r.err.Error(), "newer version") {
			t.Fatalf("Register: %v", r.err)
		}
	})
	t.Run("vprocd breaks the protocol", func(t *testing.T) {
		f := newFake(t, false)
		ch := register(newCounter(0).program())
		f.accept()
		f.send(wire.Frame{Type: wire.Start})
		r := wait(t, ch)
		f.send(wire.Frame{Type: wire.Restored})
		if e := f.expect(wire.Error).Payload; !strings.Contains(string(e), "unexpected restored") {
			t.Fatalf("error %q", e)
		}
		<-r.s.Done()
		if r.s.Err() == nil {
			t.Fatal("no error")
		}
	})
	t.Run("vprocd refuses", func(t *testing.T) {
		f := newFake(t, false)
		ch := register(newCounter(0).program())
		f.accept()
		f.send(wire.ErrorFrame("not registered"))
		if r := wait(t, ch); r.err == nil || !strings.Contains(r.err.Error(), "not registered") {
			t.Fatalf("Register: %v", r.err)
		}
	})
}

func TestNotManaged(t *testing.T) {
	t.Setenv(wire.EnvSocket, "")
	if _, err := Register(func() ([]byte, error) { return nil, nil }, func([]byte) error { return nil }); !errors.Is(err, ErrNotManaged) {
		t.Fatalf("Register: %v", err)
	}
	if _, err := RegisterProgram(Program{}); err == nil {
		t.Fatal("Register without functions")
	}
}
