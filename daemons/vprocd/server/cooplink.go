package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openssi/openssi/daemons/vprocd/coop"
)

// DefaultCoopDir is where vprocd makes the checkpoint sockets of the
// programs it starts migratable (Config.CoopDir).
const DefaultCoopDir = "/run/openssi/vprocd-coop"

// helloWait bounds the wait for a program's Hello once it connected, and
// for a restored copy's whole Hello, State, Restored exchange.
const helloWait = 30 * time.Second

// errNoLink: the program has not connected to its checkpoint socket (or
// the connection broke): it cannot move.
var errNoLink = errors.New("the program has not connected to its checkpoint socket (" + coop.EnvSocket + "), or left it")

// coopLink is vprocd's end of one program's checkpoint socket (package
// coop, docs/cooperative-migration.md): a Unix socket in a directory of
// its own that only the program's uid may enter, on which vprocd accepts
// only the process it started (SO_PEERCRED), once.
type coopLink struct {
	dir, path string
	ln        *net.UnixListener
	limits    coop.Limits

	mu   sync.Mutex // one exchange at a time
	conn net.Conn
	// ready is closed once the program said Hello (conn set) or the
	// link gave up (err set).
	ready chan struct{}
	err   error
}

// newCoopLink makes the socket of a program that will run as uid, gid.
func newCoopLink(base string, uid, gid uint32, limits coop.Limits) (*coopLink, error) {
	if base == "" {
		base = DefaultCoopDir
	}
	if err := os.MkdirAll(base, 0o711); err != nil {
		return nil, fmt.Errorf("checkpoint sockets: %w", err)
	}
	dir, err := os.MkdirTemp(base, "p")
	if err != nil {
		return nil, fmt.Errorf("checkpoint socket: %w", err)
	}
	l := &coopLink{dir: dir, path: filepath.Join(dir, "s"), limits: limits, ready: make(chan struct{})}
	fail := func(err error) (*coopLink, error) {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("checkpoint socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: l.path, Net: "unix"})
	if err != nil {
		return fail(err)
	}
	l.ln = ln
	// The directory is the program's user's alone; the socket open to
	// whoever may enter it. The peer's pid decides the rest.
	if err := os.Chmod(l.path, 0o666); err != nil {
		ln.Close()
		return fail(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, int(uid), int(gid)); err != nil {
			ln.Close()
			return fail(err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		ln.Close()
		return fail(err)
	}
	return l, nil
}

// env is the environment entries that name the socket (and, restore,
// ask for a restore).
func (l *coopLink) env(restore bool) []string {
	e := []string{coop.EnvSocket + "=" + l.path}
	if restore {
		e = append(e, coop.EnvRestore+"=1")
	}
	return e
}

// accept waits for process pid's connection and its Hello (connections
// of any other process are closed), then answers Start (state nil) or
// restores state (State, then the program's Restored). It gives up when
// the listener is closed (close) or, restoring, after helloWait.
func (l *coopLink) accept(pid int, state []byte) error {
	defer os.RemoveAll(l.dir)
	var stop *time.Timer
	if state != nil {
		stop = time.AfterFunc(helloWait, func() { l.ln.Close() })
		defer stop.Stop()
	}
	for {
		c, err := l.ln.AcceptUnix()
		if err != nil {
			l.ln.Close()
			return l.fail(fmt.Errorf("the program did not connect to its checkpoint socket: %w", err))
		}
		if peerPID(c) != pid {
			c.Close()
			continue
		}
		l.ln.Close()
		return l.hello(c, state)
	}
}

// hello takes the program's Hello on c and starts it, or restores state.
func (l *coopLink) hello(c net.Conn, state []byte) error {
	_ = c.SetDeadline(time.Now().Add(helloWait))
	f, err := coop.Read(c, l.limits)
	if err == nil {
		err = coop.ParseHello(f)
	}
	if err != nil {
		_ = coop.Write(c, coop.ErrorFrame(err.Error()), l.limits)
		c.Close()
		return l.fail(fmt.Errorf("checkpoint socket: %w", err))
	}
	if state == nil {
		err = coop.Write(c, coop.Frame{Type: coop.Start}, l.limits)
	} else {
		err = l.restore(c, state)
	}
	if err != nil {
		c.Close()
		return l.fail(err)
	}
	_ = c.SetDeadline(time.Time{})
	l.mu.Lock()
	l.conn = c
	l.mu.Unlock()
	close(l.ready)
	return nil
}

func (l *coopLink) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil && l.conn == nil {
		l.err = err
		close(l.ready)
	}
	return err
}

// restore sends state and waits for Restored.
func (l *coopLink) restore(c net.Conn, state []byte) error {
	if err := coop.Write(c, coop.Frame{Type: coop.State, Payload: state}, l.limits); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	f, err := coop.Read(c, l.limits)
	switch {
	case err != nil:
		return fmt.Errorf("restore: %w", err)
	case f.Type == coop.Error:
		return fmt.Errorf("the program could not restore its state: %s", f.Payload)
	case f.Type != coop.Restored:
		return fmt.Errorf("restore: the program answered %s", f.Type)
	}
	return nil
}

// linked returns the connection once the program said Hello, or nil.
func (l *coopLink) linked() net.Conn {
	select {
	case <-l.ready:
	default:
		return nil
	}
	return l.conn
}

// checkpoint asks the program for its state. An Error answer leaves it
// running (frozen false); any other failure breaks the link.
func (l *coopLink) checkpoint(wait time.Duration) (state []byte, err error) {
	c := l.linked()
	if c == nil {
		return nil, errNoLink
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = c.SetDeadline(time.Now().Add(wait))
	defer c.SetDeadline(time.Time{})
	if err := coop.Write(c, coop.Frame{Type: coop.Checkpoint}, l.limits); err != nil {
		c.Close()
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	f, err := l.readAnswer(c)
	switch {
	case errors.Is(err, errStateTooLarge):
		return nil, err
	case err != nil:
		c.Close()
		return nil, fmt.Errorf("checkpoint: %w", err)
	case f.Type == coop.Error:
		return nil, fmt.Errorf("the program could not checkpoint: %s", f.Payload)
	case f.Type != coop.State:
		c.Close()
		return nil, fmt.Errorf("checkpoint: the program answered %s", f.Type)
	}
	return f.Payload, nil
}

// errStateTooLarge: the program's state is over the limit; it was told
// to go on.
var errStateTooLarge = errors.New("the program's state is over vprocd.migrate.coop_state_limit")

// readAnswer reads the answer to a checkpoint. A state over the limit is
// read past and answered with Resume, so that the program goes on (it
// waits for Resume after its State) and the link stays usable.
func (l *coopLink) readAnswer(c net.Conn) (coop.Frame, error) {
	var h [coop.HeaderSize]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return coop.Frame{}, err
	}
	n := int64(binary.BigEndian.Uint32(h[:4])) - 1
	limit := int64(l.limits.State)
	if limit <= 0 {
		limit = coop.DefaultStateLimit
	}
	if coop.Type(h[4]) == coop.State && n > limit {
		if _, err := io.CopyN(io.Discard, c, n); err != nil {
			return coop.Frame{}, err
		}
		if err := coop.Write(c, coop.Frame{Type: coop.Resume}, l.limits); err != nil {
			return coop.Frame{}, err
		}
		return coop.Frame{}, fmt.Errorf("%w: %d bytes, over %d", errStateTooLarge, n, limit)
	}
	return coop.Read(io.MultiReader(bytes.NewReader(h[:]), c), l.limits)
}

// resume lets a checkpointed or restored program go on.
func (l *coopLink) resume() error {
	c := l.linked()
	if c == nil {
		return errNoLink
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return coop.Write(c, coop.Frame{Type: coop.Resume}, l.limits)
}

// close ends the link (the program ended, or its copy is dropped).
func (l *coopLink) close() {
	l.ln.Close()
	if c := l.linked(); c != nil {
		c.Close()
	}
	os.RemoveAll(l.dir)
}

// peerPID is the pid of the process at the other end of c (SO_PEERCRED),
// or -1.
func peerPID(c *net.UnixConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	pid := -1
	_ = rc.Control(func(fd uintptr) {
		if cr, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = int(cr.Pid)
		}
	})
	return pid
}
