// Package vproc is the Go client of OpenSSI's process management
// (vprocd): it runs programs on any node of the cluster as if locally,
// the rexec() of OpenSSI.
//
//	p, err := vproc.Exec(ctx, 2, vproc.Cmd{Args: []string{"make", "-j8"}, Stdout: os.Stdout, Stderr: os.Stderr})
//	st, err := p.Wait() // st.Code as a shell reports it
//
// The program runs as the calling process's user, groups included: vprocd
// reads them from its socket (SO_PEERCRED), and nothing the caller sends
// can change them.
package vproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/daemons/vprocd/stdioflow"
	"github.com/openssi/openssi/internal/execwire"
	"github.com/openssi/openssi/internal/localapi"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// DefaultSocket is vprocd's local API socket.
const DefaultSocket = "/run/openssi/vprocd.sock"

// SocketEnv names the environment variable that overrides DefaultSocket
// when no WithSocket option is given.
const SocketEnv = "OPENSSI_VPROCD_SOCKET"

// Exit statuses of a program that did not report its own.
const (
	// ExitRefused: the target refused to run it (a user unknown there,
	// a vprocd that may not act as the caller).
	ExitRefused = 125
	// ExitNotExecutable: the command exists but cannot be executed.
	ExitNotExecutable = 126
	// ExitNotFound: the command is not found on the target.
	ExitNotFound = 127
	// ExitLost: the node or the connection was lost while it ran.
	ExitLost = 255
)

// Errors callers test for (errors.Is).
var (
	// ErrNotRunning: vprocd does not run on this node (or its socket
	// may not be used).
	ErrNotRunning = errors.New("vprocd is not running on this node")
	// ErrNoNode: the target node is not a member, or is DOWN.
	ErrNoNode = errors.New("no such node, or the node is DOWN")
	// ErrUnreachable: the target node's vprocd cannot be reached.
	ErrUnreachable = errors.New("the target node's vprocd cannot be reached")
	// ErrRefused: the request was refused (bad request, permission, too
	// many programs of the user on the target).
	ErrRefused = errors.New("request refused")
	// ErrNotStarted: the program could not be started (*StartError).
	ErrNotStarted = errors.New("program not started")
	// ErrLost: the node or the connection was lost while the program
	// ran; its fate is unknown.
	ErrLost = errors.New("lost the program's node or connection")
)

// Option changes how a Client connects.
type Option func(*options)

type options struct{ socket string }

// WithSocket sets vprocd's socket (default: $OPENSSI_VPROCD_SOCKET, else
// DefaultSocket).
func WithSocket(path string) Option { return func(o *options) { o.socket = path } }

// Client is a connection to the local vprocd; one Client may run many
// programs at once.
type Client struct {
	conn   *grpc.ClientConn
	api    vprocv1.VprocClient
	socket string
	passer *localapi.Passer
	// passMu orders the programs that pass files: each one's files are
	// taken by vprocd before the next one's are sent.
	passMu sync.Mutex
}

// New connects to the local vprocd.
func New(ctx context.Context, opts ...Option) (*Client, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	conn, passer, socket, err := localapi.DialSocketPassing(ctx, o.socket, SocketEnv, DefaultSocket, stdioflow.DialOptions()...)
	if err != nil {
		if localapi.IsUnavailable(err) {
			return nil, fmt.Errorf("vproc: %w (%s): %w", ErrNotRunning, socket, err)
		}
		return nil, fmt.Errorf("vproc: %w", err)
	}
	warmOnce.Do(func() { go warmCodecs() })
	return &Client{conn: conn, api: vprocv1.NewVprocClient(conn), socket: socket, passer: passer}, nil
}

var warmOnce sync.Once

// warmCodecs encodes and decodes an exec's messages once, while the
// connection is being made: the protobuf runtime builds each message
// type's coders on its first use (the first took about 0.15 ms in a fresh
// process, on the way of a process's first Exec).
func warmCodecs() {
	in, _ := proto.Marshal(&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Start{Start: &vprocv1.ExecRequest{
		Argv: [][]byte{{'x'}}, Env: [][]byte{{'x'}}, Cwd: []byte{'/'}, Size: &vprocv1.WindowSize{}}}})
	_ = proto.Unmarshal(in, &vprocv1.ExecInput{})
	for _, m := range []*vprocv1.ExecOutput{
		{Kind: &vprocv1.ExecOutput_Started{Started: &vprocv1.Started{Cpid: 1}}},
		{Kind: &vprocv1.ExecOutput_Stdout{Stdout: []byte{'x'}}},
		{Kind: &vprocv1.ExecOutput_Exit{Exit: &vprocv1.Exit{Code: 1}}},
	} {
		b, _ := proto.Marshal(m)
		_ = proto.Unmarshal(b, &vprocv1.ExecOutput{})
	}
}

// Close closes the connection; programs still running through it lose
// their caller and are killed (unless detached).
func (c *Client) Close() error { return c.conn.Close() }

// Cmd is a program to run.
type Cmd struct {
	// Args is the command and its arguments; Args[0] is looked up in the
	// PATH of Env on the target when it has no slash.
	Args []string
	// Env is the program's environment; nil means this process's.
	Env []string
	// Dir is the directory to run in; "" means this process's. Where it
	// does not exist on the target, the program runs in the user's home
	// and a note says so on its stderr.
	Dir string
	// TTY runs it on a pseudo-terminal of Rows x Cols on the target;
	// its stdout and stderr are then both the terminal (Stdout).
	TTY        bool
	Rows, Cols uint16
	// Detach lets it run on after this process: its stdio is /dev/null
	// and Exec returns once it runs.
	Detach bool
	// Migratable starts it for cooperative migration: vprocd gives it a
	// checkpoint socket (OPENSSI_CHECKPOINT_SOCK; a Go program registers
	// with client/vproc/coop) and Migrate can then move it to another
	// node while this Process reads on. Not with TTY or Detach.
	Migratable bool
	// Stdin, Stdout and Stderr, when set, are copied to and from the
	// program; when nil, Process has a pipe in their place.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// PassFiles hands Stdin, Stdout and Stderr that are pipes (*os.File
	// open in their direction) to the local vprocd (SCM_RIGHTS), which
	// then reads and writes them itself: the program's bytes do not
	// cross this process (faster, as an OpenSSH ControlMaster's
	// clients). Anything else (a terminal, a regular file, a socket) and
	// what a vprocd older than file passing did not take is streamed by
	// this process as without PassFiles. Not with TTY or Detach. The
	// files must stay open until the program ends.
	PassFiles bool
}

// ExitStatus is how a program ended.
type ExitStatus struct {
	// Code is what a shell would report: its exit code, 128+N for signal
	// N, ExitNotFound, ExitNotExecutable, ExitRefused, ExitLost.
	Code int
	// Signal is the signal that ended it, or 0.
	Signal int
	// Reason is one line when it did not end by itself, or "".
	Reason string
}

// StartError is a program that could not be started; its Status says why
// (Code ExitNotFound, ExitNotExecutable or ExitRefused, and Reason).
type StartError struct{ Status ExitStatus }

func (e *StartError) Error() string { return "vproc: " + e.Status.Reason }

// Unwrap makes errors.Is(err, ErrNotStarted) true.
func (e *StartError) Unwrap() error { return ErrNotStarted }

// Exec runs cmd on node (0: this node, or by load for a program registered
// for load leveling; Auto: by load) through a new connection to the local
// vprocd, which the Process closes when it ends.
func Exec(ctx context.Context, node int, cmd Cmd, opts ...Option) (*Process, error) {
	c, err := New(ctx, opts...)
	if err != nil {
		return nil, err
	}
	p, err := c.Exec(ctx, node, cmd)
	if err != nil {
		c.Close()
		return nil, err
	}
	p.closer = c
	if cmd.Detach {
		c.Close()
	}
	return p, nil
}

// Process is a program started by Exec.
type Process struct {
	// Cpid is its cluster-wide process id; Node the node it runs on; Pid
	// its process id there.
	Cpid int64
	Node int
	Pid  int
	// Stdin is its standard input when Cmd.Stdin was nil (Close ends
	// it); nil otherwise.
	Stdin io.WriteCloser
	// Stdout and Stderr are its output when Cmd.Stdout and Cmd.Stderr
	// were nil (read them, or the program stalls); nil otherwise.
	Stdout, Stderr io.Reader

	stream vprocv1.Vproc_ExecClient
	cancel context.CancelFunc
	sendMu sync.Mutex
	done   chan struct{}
	status ExitStatus
	err    error
	closer io.Closer
}

// Exec runs cmd on node (0: this node, or the least-loaded node for a
// program registered for load leveling; Auto: the least-loaded node). It
// returns once the program runs,
// with an error wrapping ErrNotStarted (a *StartError), ErrNoNode,
// ErrUnreachable, ErrRefused or ErrNotRunning otherwise. The program is
// killed if ctx ends before it does (unless detached).
func (c *Client) Exec(ctx context.Context, node int, cmd Cmd) (*Process, error) {
	if len(cmd.Args) == 0 || cmd.Args[0] == "" {
		return nil, fmt.Errorf("vproc: %w: no command given", ErrRefused)
	}
	if node == Auto {
		n, err := c.Place(ctx) // the local vprocd chooses
		if err != nil {
			return nil, err
		}
		node = n
	}
	if node < 0 {
		return nil, fmt.Errorf("vproc: %w: node %d", ErrNoNode, node)
	}
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	dir := cmd.Dir
	if dir == "" {
		dir, _ = os.Getwd()
	}
	req := &vprocv1.ExecRequest{Node: uint32(node), Argv: bytesOf(cmd.Args), Env: bytesOf(env), Cwd: []byte(dir),
		Tty: cmd.TTY, Detach: cmd.Detach, Migratable: cmd.Migratable}
	if cmd.TTY {
		req.Size = &vprocv1.WindowSize{Rows: uint32(cmd.Rows), Cols: uint32(cmd.Cols)}
	}
	return c.start(ctx, req, cmd, c.wrap)
}

// Strace traces the running process cpid, on whatever node it runs, with
// strace given args (strace's options only, at most 256: -p/--attach, a
// command, -o/--output |CMD or !CMD, which pipes to a command, and
// -u/--user and -E/--env are refused with ErrRefused), as the calling
// process's user, like a program of Exec on that node: cmd gives its
// stdio (strace writes its trace to stderr), environment and directory;
// its Args, TTY and Detach are not used. Signal(SIGINT) makes strace detach and exit (status 130); the
// process traced runs on. Errors are Exec's, and ErrNoProcess (no process
// has that cpid) and ErrPermission (a user may trace only its own
// processes, root any; the kernel's ptrace rules decide the rest). strace
// not installed on that node is a *StartError with ExitNotFound.
func (c *Client) Strace(ctx context.Context, cpid int64, args []string, cmd Cmd) (*Process, error) {
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	dir := cmd.Dir
	if dir == "" {
		dir, _ = os.Getwd()
	}
	req := &vprocv1.ExecRequest{Env: bytesOf(env), Cwd: []byte(dir), Trace: &vprocv1.Trace{Cpid: cpid, Args: bytesOf(args)}}
	cmd.Detach, cmd.TTY = false, false
	return c.start(ctx, req, cmd, c.wrapSignal)
}

// start sends req and returns the program once it runs; wrap turns a
// refusal into the package's errors.
func (c *Client) start(ctx context.Context, req *vprocv1.ExecRequest, cmd Cmd, wrap func(error) error) (*Process, error) {
	files, mask := passable(cmd)
	sctx, cancel := context.WithCancel(ctx)
	req.PassedStdio = 0
	var stream vprocv1.Vproc_ExecClient
	passLost := func() {}
	if se := dialExec(sctx, c.socket, files); se != nil {
		// The files go with the request, on a connection of its own.
		stream, req.PassedStdio = se, mask
	} else {
		var passer *localapi.Passer
		if mask != 0 {
			c.passMu.Lock()
			defer c.passMu.Unlock() // vprocd took them once it answered
			passer = c.passer
		}
		gs, err := c.api.Exec(sctx)
		if err != nil {
			cancel()
			return nil, wrap(err)
		}
		stream = gs
		if passer != nil && passer.Pass(files) == nil {
			req.PassedStdio = mask
			// Files passed with a request vprocd never read would be
			// taken by this connection's next exec: after such a
			// failure this Client passes no more (its stdio is
			// streamed instead).
			passLost = func() { c.passer = nil } // passMu is held
		}
	}
	if err := stream.Send(&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Start{Start: req}}); err != nil {
		cancel()
		passLost()
		_, rerr := stream.Recv()
		return nil, wrap(rerr)
	}
	return awaitStart(stream, cancel, req.PassedStdio, cmd, wrap, passLost)
}

// SentExec is an exec whose request this process sent itself on a
// connection to vprocd's exec socket: ssi exec sends it before its
// packages are initialised (package cmd/ssi/early) and resumes it here.
type SentExec struct {
	// Conn is the connection; the Process's from Resume on.
	Conn *net.UnixConn
	// Socket is vprocd's socket (next to the exec socket), which
	// messages name.
	Socket string
	// Passed is the request's passed_stdio: the stdio files that went
	// with it.
	Passed uint32
	// FirstKind and FirstMsg are vprocd's first frame (execwire's kind
	// and message) when the sender read it already; FirstKind 0
	// otherwise.
	FirstKind byte
	FirstMsg  []byte
}

// Resume takes over an exec this process sent: cmd's Stdin, Stdout and
// Stderr must be the files passed where s.Passed says so, and are copied
// otherwise. It returns as Exec does; the exec ends if ctx does.
func Resume(ctx context.Context, s SentExec, cmd Cmd) (*Process, error) {
	sctx, cancel := context.WithCancel(ctx)
	c := &Client{socket: s.Socket}
	se := newSockExec(sctx, s.Conn, nil)
	if s.FirstKind != 0 {
		se.pending = &execwire.Frame{Kind: s.FirstKind, Msg: s.FirstMsg}
	}
	return awaitStart(se, cancel, s.Passed, cmd, c.wrap, func() {})
}

// awaitStart reads vprocd's answer to an exec request sent on stream with
// the files passed says, and returns the program once it runs; passLost
// is called when the request may not have been read.
func awaitStart(stream vprocv1.Vproc_ExecClient, cancel context.CancelFunc, passed uint32, cmd Cmd, wrap func(error) error, passLost func()) (*Process, error) {
	first, err := stream.Recv()
	if err != nil {
		cancel()
		passLost()
		return nil, wrap(err)
	}
	if e := first.GetExit(); e != nil {
		cancel()
		return nil, &StartError{Status: statusOf(e)}
	}
	st := first.GetStarted()
	if st == nil {
		cancel()
		return nil, fmt.Errorf("vproc: vprocd replied %T before the program started", first.Kind)
	}
	if passed != 0 && st.PassedStdio != passed {
		// A vprocd older than file passing dropped the files: its
		// output comes as messages, and the stdin is streamed from here.
		passed = 0
	}
	p := &Process{Cpid: st.Cpid, Node: int(st.Node), Pid: int(st.Pid), stream: stream, cancel: cancel, done: make(chan struct{})}
	if cmd.Detach {
		close(p.done)
		cancel()
		return p, nil
	}
	stdout, stderr := cmd.Stdout, cmd.Stderr
	var pipes []*io.PipeWriter
	if stdout == nil {
		r, w := io.Pipe()
		p.Stdout, stdout = r, w
		pipes = append(pipes, w)
	}
	if stderr == nil {
		r, w := io.Pipe()
		p.Stderr, stderr = r, w
		pipes = append(pipes, w)
	}
	in := &stdinWriter{p: p}
	switch {
	case passed&passedStdin != 0:
		// vprocd reads it.
	case cmd.Stdin == nil:
		p.Stdin = in
	default:
		go func() {
			_, _ = io.Copy(in, cmd.Stdin)
			_ = in.Close()
		}()
	}
	go p.receive(stdout, stderr, pipes)
	return p, nil
}

// passedStdin is the stdin's bit of ExecRequest.passed_stdio (stdout's
// is 2, stderr's 4).
const passedStdin = 1

// passable returns the stdio files of cmd to pass to vprocd and the
// passed_stdio that says which they are.
func passable(cmd Cmd) ([]*os.File, uint32) {
	if !cmd.PassFiles || cmd.TTY || cmd.Detach {
		return nil, 0
	}
	var files []*os.File
	var mask uint32
	for i, x := range []any{cmd.Stdin, cmd.Stdout, cmd.Stderr} {
		if f, ok := x.(*os.File); ok && f != nil && canPass(f, i > 0) {
			files = append(files, f)
			mask |= 1 << i
		}
	}
	return files, mask
}

// canPass says whether f may be passed (execwire.Passable: a pipe open
// in its direction); anything else is streamed by this process.
func canPass(f *os.File, write bool) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	if rc.Control(func(fd uintptr) { ok = execwire.Passable(int(fd), write) }) != nil {
		return false
	}
	return ok
}

// receive copies the program's output until its exit.
func (p *Process) receive(stdout, stderr io.Writer, pipes []*io.PipeWriter) {
	defer close(p.done)
	defer p.cancel()
	var werr error // a failed write: its output is dropped from then on
	for {
		m, err := p.stream.Recv()
		if err != nil {
			p.status = ExitStatus{Code: ExitLost, Reason: "lost the connection to vprocd"}
			p.err = fmt.Errorf("vproc: %w: %s", ErrLost, lostWhy(err))
			for _, w := range pipes {
				w.CloseWithError(p.err)
			}
			return
		}
		switch k := m.Kind.(type) {
		case *vprocv1.ExecOutput_Stdout:
			if werr == nil {
				_, werr = stdout.Write(k.Stdout)
			}
		case *vprocv1.ExecOutput_Stderr:
			if werr == nil {
				_, werr = stderr.Write(k.Stderr)
			}
		case *vprocv1.ExecOutput_Exit:
			p.status = statusOf(k.Exit)
			if p.status.Code == ExitLost && p.status.Reason != "" {
				p.err = fmt.Errorf("vproc: %w: %s", ErrLost, p.status.Reason)
			}
			for _, w := range pipes {
				w.Close()
			}
			return
		}
	}
}

// Wait waits for the program to end and returns its status. The error is
// nil when the program's own status is known, and wraps ErrLost (with
// Code ExitLost) when its node or the connection was lost.
func (p *Process) Wait() (ExitStatus, error) {
	<-p.done
	if p.closer != nil {
		p.closer.Close()
		p.closer = nil
	}
	return p.status, p.err
}

// Signal sends sig to the program's process group (on a terminal, to its
// foreground process group).
func (p *Process) Signal(sig syscall.Signal) error {
	return p.send(&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Signal{Signal: int32(sig)}})
}

// Resize sets the size of the program's terminal.
func (p *Process) Resize(rows, cols uint16) error {
	return p.send(&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Resize{Resize: &vprocv1.WindowSize{Rows: uint32(rows), Cols: uint32(cols)}}})
}

func (p *Process) send(m *vprocv1.ExecInput) error {
	select {
	case <-p.done:
		return fmt.Errorf("vproc: the program has ended")
	default:
	}
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	if err := p.stream.Send(m); err != nil {
		return fmt.Errorf("vproc: %w: %v", ErrLost, err)
	}
	return nil
}

// chunk is the largest stdin message sent.
const chunk = stdioflow.Chunk

// stdinWriter sends the program's stdin.
type stdinWriter struct {
	p    *Process
	once sync.Once
}

func (w *stdinWriter) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		k := min(len(b), chunk)
		if err := w.p.send(&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Stdin{Stdin: b[:k]}}); err != nil {
			return n, err
		}
		n += k
		b = b[k:]
	}
	return n, nil
}

// ReadFrom sends what r gives until its end, up to a chunk a message
// once reads fill their buffer (io.Copy reads 32 KiB at a time); it does
// not close the stdin.
func (w *stdinWriter) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, stdioflow.FirstRead)
	var n int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
			if next := stdioflow.NextRead(len(buf), k); next != len(buf) {
				buf = make([]byte, next)
			}
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func (w *stdinWriter) Close() error {
	var err error
	w.once.Do(func() { err = w.p.send(&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_StdinEof{StdinEof: true}}) })
	return err
}

// wrap turns a status from vprocd into the package's errors.
func (c *Client) wrap(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("vproc: %w: vprocd closed the stream", ErrLost)
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("vproc: %w", err)
	}
	msg := st.Message()
	switch st.Code() {
	case codes.FailedPrecondition:
		return wrapped{msg, ErrNoNode}
	case codes.Unavailable:
		if !isPeer(msg) {
			return fmt.Errorf("vproc: %w (%s): %s", ErrNotRunning, c.socket, msg)
		}
		return wrapped{msg, ErrUnreachable}
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted:
		return wrapped{msg, ErrRefused}
	}
	return fmt.Errorf("vproc: %s", msg)
}

// lostWhy says why an exec's stream ended before its exit, as ssi's early
// start says it too: vprocd's own message for a status, not gRPC's form
// of it.
func lostWhy(err error) string {
	if errors.Is(err, io.EOF) {
		return "vprocd closed the connection"
	}
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

// wrapped is vprocd's message (which has the package prefix) marked as
// one of the package's errors.
type wrapped struct {
	msg string
	err error
}

func (w wrapped) Error() string { return w.msg }
func (w wrapped) Unwrap() error { return w.err }

// isPeer says whether an Unavailable message is vprocd's about a peer
// (rather than gRPC's about vprocd itself).
func isPeer(msg string) bool { return len(msg) > 6 && msg[:6] == "vproc:" }

func statusOf(e *vprocv1.Exit) ExitStatus {
	return ExitStatus{Code: int(e.Code), Signal: int(e.Signal), Reason: e.Reason}
}

func bytesOf(s []string) [][]byte {
	out := make([][]byte, len(s))
	for i, x := range s {
		out[i] = []byte(x)
	}
	return out
}
