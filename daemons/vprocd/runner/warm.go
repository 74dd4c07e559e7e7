package runner

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/gate"
)

// Warm keeps gates started ahead of requests (package gate's warm
// gates): after a caller's first program, up to PerCaller gates of that
// caller's exact identity wait, each already in its scope, so the next
// program of the same caller starts without a new process or a call to
// systemd on its way. A gate is the caller's own process, idle, holding
// nothing but its end of a socket to vprocd; it is ended after Idle
// without a request, and when vprocd stops (its socket closes).
type Warm struct {
	cfg WarmConfig

	mu     sync.Mutex
	idle   map[string][]*warmGate // by credKey
	making map[string]int
	total  int // idle and being made
	closed bool
	// ready, in tests, learns of each gate made idle.
	ready func(pid int)
}

// WarmConfig configures Warm.
type WarmConfig struct {
	// Prepare puts a new gate, process pid run as uid, in its scope; a
	// gate it fails for is ended, not kept.
	Prepare func(pid int, uid uint32) error
	// PerCaller bounds the idle gates of one identity, Max those of
	// all together.
	PerCaller, Max int
	// Idle is how long a gate waits for a request before it is ended
	// (Trim).
	Idle time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

type warmGate struct {
	cmd   *exec.Cmd
	sock  *net.UnixConn // vprocd's end of the gate's socket
	since time.Time
}

// NewWarm returns an empty Warm.
func NewWarm(cfg WarmConfig) *Warm {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Warm{cfg: cfg, idle: map[string][]*warmGate{}, making: map[string]int{}}
}

func credKey(c Cred) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d:%d", c.UID, c.GID)
	for _, g := range c.Groups {
		b.WriteByte(',')
		b.WriteString(strconv.FormatUint(uint64(g), 10))
	}
	return b.String()
}

// Start is the package's Start of a gated program: through an idle gate
// of s.Cred when there is one (the Proc is then InScope and runs at
// once), else a new gated process. Once a program started, another gate
// for s.Cred is made in the background, within the bounds: when the
// program ends if a gate ran it (so that making one does not compete with
// the program's start for the CPU; another gate may wait meanwhile), else
// at once.
func (w *Warm) Start(s Spec) (*Proc, error) {
	s.Gated = true
	key := credKey(s.Cred)
	p, err := start(s, func() *warmGate { return w.take(key) })
	switch {
	case err != nil:
		// No gate for a refused caller (a uid unknown here, say).
	case p.InScope:
		p.onExit = func() { w.refill(key, s.Cred) }
	default:
		w.refill(key, s.Cred)
	}
	return p, err
}

// take removes and returns an idle gate of key, the oldest first (a
// gate just made may still be starting its runtime, and the program would
// wait for it), or nil.
func (w *Warm) take(key string) *warmGate {
	w.mu.Lock()
	defer w.mu.Unlock()
	gs := w.idle[key]
	if len(gs) == 0 {
		return nil
	}
	g := gs[0]
	if len(gs) == 1 {
		delete(w.idle, key)
	} else {
		w.idle[key] = gs[1:]
	}
	w.total--
	return g
}

// refill makes one more gate of c when the bounds allow.
func (w *Warm) refill(key string, c Cred) {
	w.mu.Lock()
	if w.closed || w.total >= w.cfg.Max || len(w.idle[key])+w.making[key] >= w.cfg.PerCaller {
		w.mu.Unlock()
		return
	}
	w.making[key]++
	w.total++
	w.mu.Unlock()
	go func() {
		g, err := w.make(c)
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.making[key]--; w.making[key] == 0 {
			delete(w.making, key)
		}
		if err != nil || w.closed {
			w.total--
			if g != nil {
				g.end()
			}
			return
		}
		w.idle[key] = append(w.idle[key], g)
		if w.ready != nil {
			w.ready(g.cmd.Process.Pid)
		}
	}()
}

// make starts a gate as c and has it put in its scope.
func (w *Warm) make(c Cred) (*warmGate, error) {
	cred, err := credential(c)
	if err != nil {
		return nil, err
	}
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("runner: gate socket: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(pair[0]), "gate"), os.NewFile(uintptr(pair[1]), "gate")
	defer theirs.Close()
	fc, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return nil, fmt.Errorf("runner: gate socket: %w", err)
	}
	// Nothing of vprocd's: no environment, the root directory, /dev/null
	// as stdio (exec.Cmd's nil), until a Launch says what the program has.
	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: []string{gate.Name}, Env: []string{}, Dir: "/",
		ExtraFiles: []*os.File{theirs}, SysProcAttr: &syscall.SysProcAttr{Credential: cred}}
	if err := cmd.Start(); err != nil {
		fc.Close()
		return nil, fmt.Errorf("runner: start a gate: %w", err)
	}
	g := &warmGate{cmd: cmd, sock: fc.(*net.UnixConn), since: w.cfg.Now()}
	if err := w.cfg.Prepare(cmd.Process.Pid, c.UID); err != nil {
		return g, err
	}
	return g, nil
}

// end ends an idle gate: closing its socket ends it, killing it makes
// sure, and it is reaped in the background.
func (g *warmGate) end() {
	g.sock.Close()
	_ = g.cmd.Process.Kill()
	go func() { _ = g.cmd.Wait() }()
}

// Idle returns how many gates wait.
func (w *Warm) Idle() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, gs := range w.idle {
		n += len(gs)
	}
	return n
}

// Trim ends the gates idle for Idle or longer; it returns how many are
// left.
func (w *Warm) Trim() int {
	cut := w.cfg.Now().Add(-w.cfg.Idle)
	w.mu.Lock()
	defer w.mu.Unlock()
	left := 0
	for key, gs := range w.idle {
		kept := gs[:0]
		for _, g := range gs {
			if g.since.After(cut) {
				kept = append(kept, g)
				continue
			}
			g.end()
			w.total--
		}
		if len(kept) == 0 {
			delete(w.idle, key)
		} else {
			w.idle[key] = kept
		}
		left += len(kept)
	}
	return left
}

// Close ends every idle gate and makes no more.
func (w *Warm) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for key, gs := range w.idle {
		for _, g := range gs {
			g.end()
			w.total--
		}
		delete(w.idle, key)
	}
}

// errGateGone: an idle gate did not take its Launch (it was killed, or
// did not answer): start tries the next, or a new process.
var errGateGone = errors.New("runner: the gate is gone")

// gateAnswer bounds the wait for a gate to take its Launch (tests shorten
// it).
var gateAnswer = 2 * time.Second

// launch hands the program cmd describes (its stdio wired, its session or
// group in attr) to the idle gate g and waits until it took it. On
// errGateGone g is ended and nothing was started.
func (p *Proc) launch(g *warmGate, cmd *exec.Cmd, attr *syscall.SysProcAttr) error {
	l := gate.Launch{Path: cmd.Path, Argv: cmd.Args, Env: cmd.Env, Dir: cmd.Dir,
		Setsid: attr.Setsid, Setctty: attr.Setctty, Setpgid: attr.Setpgid}
	if l.Env == nil {
		l.Env = []string{}
	}
	msg := gate.Encode(l)
	if len(msg)-4 > gate.MaxLaunch {
		g.end()
		return &StartError{Code: ExitNotExecutable, Msg: cmd.Args[0] + ": Argument list too long"}
	}
	var oob []byte
	if stdio := []any{cmd.Stdin, cmd.Stdout, cmd.Stderr}; stdio[0] != nil {
		fds := make([]int, 3)
		for i, f := range stdio {
			fds[i] = int(f.(*os.File).Fd())
		}
		oob = syscall.UnixRights(fds...)
	}
	_ = g.sock.SetDeadline(time.Now().Add(gateAnswer))
	n, _, err := g.sock.WriteMsgUnix(msg, oob, nil)
	if err == nil && n < len(msg) {
		_, err = g.sock.Write(msg[n:])
	}
	if err != nil {
		// It did not get the whole Launch: it cannot run it.
		g.end()
		return errGateGone
	}
	var ack [1]byte
	if _, err := g.sock.Read(ack[:]); err != nil {
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			// It ended (EOF, or a reset: it died with our Launch
			// unread) before its answer, which comes before the
			// program's exec: it ran nothing.
			g.end()
			return errGateGone
		}
		// No answer in time: it may still run the program (a stopped
		// or starved gate), so starting it elsewhere could run it twice.
		// End the gate and its group, and refuse.
		_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
		g.end()
		return &StartError{Code: ExitRefused, Msg: fmt.Sprintf("vprocd: the gate that was to run %s did not answer in %s: not started", cmd.Args[0], gateAnswer)}
	}
	g.sock.Close()
	p.cmd, p.Pid, p.InScope = g.cmd, g.cmd.Process.Pid, true
	return nil
}
