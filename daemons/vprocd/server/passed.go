package server

import (
	"context"
	"errors"
	"io"
	"math/bits"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/vprocd/stdioflow"
	"github.com/openssi/openssi/internal/localapi"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// The caller's stdio files it may pass (ExecRequest.passed_stdio).
const (
	passedStdin  = 1
	passedStdout = 2
	passedStderr = 4
	passedAll    = passedStdin | passedStdout | passedStderr
)

// passedStream is a caller's exec stream whose stdin, stdout or stderr
// the caller passed on its connection (SCM_RIGHTS). A program of this
// node gets them as its own stdio (give): nothing crosses vprocd, which
// keeps no copy once the program started. For a program of another node
// vprocd reads the passed stdin into Stdin messages and writes Stdout
// and Stderr messages to the passed files itself (relay). Either way the
// program's bytes do not cross the caller (as an OpenSSH ControlMaster
// does with its clients' stdio).
//
// The files are the caller's own, opened with its rights: pipes only
// (see ownDescription). Their file descriptions may be
// shared with other processes (a shell's pipe, a file): vprocd never
// changes their flags (a pipe gets a non-blocking description of its
// own), waits for the stdin with poll(2) beside a pipe of its own so
// that the exec's end stops the wait, and writes the output in order
// from one goroutine. A terminal is never passed (the client keeps
// those: job control applies to the caller's process, not to vprocd).
type passedStream struct {
	vprocv1.Vproc_ExecServer
	mask uint32          // the files taken (ExecRequest.passed_stdio), told in Started
	ctx  context.Context // the caller's stream's
	in   chan received
	stop chan struct{}
	once sync.Once
	// sigs, once signalsAside made it, takes the caller's signals in
	// place of Recv.
	sigMu sync.Mutex
	sigs  chan *vprocv1.ExecInput

	// An output whose reader is gone (EPIPE) is broken for the program
	// as the caller's pipe would be for a local one: its output there
	// is dropped from then on, and an OutputClosed input (closed) tells
	// the program's runner, which closes its end of the program's pipe
	// (the program's next write there fails with EPIPE or SIGPIPE, what
	// it does then is its own, its status is the caller's). That input
	// comes after the stdin already sent: when more than brokenSlack
	// bytes still come for a broken output, or any comes brokenGrace
	// after the break (a program that does not read the stdin the
	// caller keeps full, a target vprocd that does not know
	// OutputClosed, a feed stuck on such a stdin: the program's end was
	// never closed), the exec ends as ssi ended when it wrote
	// the output itself (a Go program dies of SIGPIPE writing to a
	// broken stdout or stderr): its context is cancelled (the program
	// is killed, as for a caller gone) and the caller gets the status
	// of a death by SIGPIPE.
	broken   atomic.Uint32 // the outputs broken (passed_stdio bits)
	closed   chan uint32   // each broken output's bit, once, for Recv
	dropped  int           // output bytes dropped since (Send's)
	brokenAt atomic.Int64  // when the first output broke (Unix ns), 0 before
	now      func() time.Time
	cancel   context.CancelFunc
	killed   chan struct{}
	killOnce sync.Once
	exitSent bool

	stdin *os.File // nil when not passed
	// stdinWait: the stdin is a pipe of the caller's description
	// (blocking, not reopened): its reads are waited for with poll
	// beside wake, closed to end the wait. A description of vprocd's own
	// is read through Go's poller (its Close ends a read).
	stdinWait bool
	wake      *os.File
	// shared: a file is the caller's own description (not reopened);
	// given: the files are the program's own stdio (give).
	shared bool
	given  bool
	stdout *os.File
	stderr *os.File
	writes chan outWrite
}

type received struct {
	m   *vprocv1.ExecInput
	err error
}

// outWrite is output to write, or (flush set) a mark closed once all
// before it was written.
type outWrite struct {
	f     *os.File
	b     []byte
	flush chan struct{}
}

// passFiles takes the files the request says were passed from the
// caller's connection and returns the stream that uses them.
func passFiles(ctx context.Context, stream vprocv1.Vproc_ExecServer, mask uint32, cancel context.CancelFunc) (*passedStream, error) {
	files := localapi.FilesFrom(ctx).Take()
	if len(files) != bits.OnesCount32(mask) {
		for _, f := range files {
			f.Close()
		}
		return nil, status.Errorf(codes.InvalidArgument, "vproc: the request says %d stdio files were passed, %d came with it", bits.OnesCount32(mask), len(files))
	}
	p := &passedStream{Vproc_ExecServer: stream, mask: mask, ctx: stream.Context(), in: make(chan received), stop: make(chan struct{}),
		closed: make(chan uint32, 2), cancel: cancel, killed: make(chan struct{})}
	var bad error
	for _, x := range []struct {
		bit   uint32
		f     **os.File
		write bool
	}{{passedStdin, &p.stdin, false}, {passedStdout, &p.stdout, true}, {passedStderr, &p.stderr, true}} {
		if mask&x.bit == 0 {
			continue
		}
		f := files[0]
		files = files[1:]
		g, wait, err := ownDescription(f, x.write)
		if x.bit == passedStdin {
			p.stdinWait = wait
		}
		p.shared = p.shared || wait
		if err != nil {
			f.Close()
			if bad == nil {
				bad = err
			}
			continue
		}
		*x.f = g
	}
	if bad != nil {
		p.closeFiles()
		return nil, status.Error(codes.InvalidArgument, "vproc: "+bad.Error())
	}
	go p.receive()
	return p, nil
}

// give makes the passed files the stdio of the program, run on this
// node, as a shell gives its pipes to its child: vprocd neither reads
// nor writes them, and closes its copies once the program started (see
// run), so that a running exec holds none. The program's descriptions
// are vprocd's own (ownDescription), made blocking for it, as a shell's
// pipes are, and a reader gone breaks its output as it would locally.
// False when a file is the caller's own description (vprocd could not
// reopen it): its flags are the caller's, not changed, and the files are
// relayed (relay).
func (p *passedStream) give() bool {
	if p.shared {
		return false
	}
	p.given = true
	return true
}

// givenStdio returns the files given to the program (nil where not
// passed, or not given).
func (p *passedStream) givenStdio() [3]*os.File {
	if !p.given {
		return [3]*os.File{}
	}
	return [3]*os.File{p.stdin, p.stdout, p.stderr}
}

// relay starts reading the passed stdin into Stdin messages and writing
// the Stdout and Stderr messages to the passed outputs: for a program on
// another node (or files not given).
func (p *passedStream) relay() error {
	if p.stdin != nil {
		var r *os.File
		if p.stdinWait {
			var err error
			if r, p.wake, err = os.Pipe(); err != nil {
				return status.Errorf(codes.Internal, "vproc: %v", err)
			}
		}
		go p.readStdin(r)
	}
	if p.stdout != nil || p.stderr != nil {
		p.writes = make(chan outWrite, stdinQueue)
		go p.writeOutput()
	}
	return nil
}

func (p *passedStream) closeFiles() {
	for _, f := range []*os.File{p.stdin, p.stdout, p.stderr} {
		if f != nil {
			f.Close()
		}
	}
}

// close ends the stream's goroutines and closes the files (which ends a
// read or write under way on a pipe's own description; one on a regular
// file ends by itself).
func (p *passedStream) close() {
	p.once.Do(func() {
		close(p.stop)
		if p.wake != nil {
			p.wake.Close()
		}
		p.closeFiles()
	})
}

// ownDescription returns the passed f to read from (write to, with
// write) as vprocd may: a pipe (a FIFO) reopened through /proc as a file
// description of vprocd's own, non-blocking (so that the exec's end can
// stop a read or write that would wait for ever, and the caller's shared
// description keeps its flags). Anything else (a regular file, a socket,
// a device, a terminal) is refused, as is a pipe not open for the
// direction asked or open with O_PATH. A pipe that cannot be reopened (vprocd without the
// rights on another user's pipe) is used as it is.
// reopenPipes is false in tests of a vprocd that may not reopen the
// caller's pipes.
var reopenPipes = true

// wait says that f is the caller's own pipe description, whose reads
// must be waited for with poll (see passedStream.stdinWait).
func ownDescription(f *os.File, write bool) (g *os.File, wait bool, err error) {
	fd := fdOf(f)
	if fd < 0 {
		return nil, false, errors.New("a passed file has no descriptor")
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, false, err
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return nil, false, err
	}
	if fl&unix.O_PATH != 0 {
		// No access to the file at all, though its access mode reads
		// O_RDONLY; reopened through /proc it would be opened with
		// vprocd's rights, not the caller's.
		return nil, false, errors.New("a passed stdio file is open with O_PATH, not for reading or writing")
	}
	acc, want := fl&unix.O_ACCMODE, unix.O_RDONLY
	if write {
		want = unix.O_WRONLY
	}
	if acc != want && acc != unix.O_RDWR {
		return nil, false, errors.New("a passed stdio file is not open for its direction")
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		// Only a pipe: vprocd is root, and on a regular file its own
		// reads and writes would be root's (procfs files that decide
		// at each read or write what the reader may see or the writer
		// may set, quotas, RLIMIT_FSIZE, setuid bits kept, the page
		// cache charged to vprocd), and a file on a user's FUSE mount
		// could block it for ever. A pipe carries bytes and nothing
		// else. The caller streams anything else itself.
		return nil, false, errors.New("a passed stdio file is not a pipe")
	}
	nfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), want|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil || !reopenPipes {
		if err == nil {
			unix.Close(nfd)
		}
		return f, true, nil
	}
	f.Close()
	return os.NewFile(uintptr(nfd), f.Name()), false, nil
}

func (p *passedStream) deliver(r received) bool {
	select {
	case p.in <- r:
		return true
	case <-p.stop:
		return false
	}
}

// receive relays the caller's own messages (signals, window sizes). The
// end of its sending is no end of the stdin when the stdin was passed,
// and the end of the stdin otherwise: the stream stays open for the
// OutputClosed of a passed output broken later.
func (p *passedStream) receive() {
	for {
		m, err := p.Vproc_ExecServer.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if p.stdin == nil {
					p.deliver(received{m: &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_StdinEof{StdinEof: true}}})
				}
				return
			}
			p.deliver(received{err: err})
			return
		}
		if _, ok := m.GetKind().(*vprocv1.ExecInput_Signal); ok {
			p.sigMu.Lock()
			sigs := p.sigs
			p.sigMu.Unlock()
			if sigs != nil {
				select {
				case sigs <- m:
					continue
				case <-p.stop:
					return
				}
			}
		}
		if !p.deliver(received{m: m}) {
			return
		}
	}
}

// signalsAside hands the caller's signals from now on to the channel it
// returns rather than to Recv, where the passed stdin, relayed, may hold
// them up behind bytes the program does not read; nil when no stdin was
// passed (nothing comes before them then but the caller's own inputs).
func (p *passedStream) signalsAside() <-chan *vprocv1.ExecInput {
	if p.stdin == nil {
		return nil
	}
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	if p.sigs == nil {
		p.sigs = make(chan *vprocv1.ExecInput, 16)
	}
	return p.sigs
}

// readStdin makes the passed stdin Stdin messages, then StdinEof.
func (p *passedStream) readStdin(wake *os.File) {
	fd, wfd := -1, -1
	if wake != nil {
		defer wake.Close()
		fd, wfd = fdOf(p.stdin), fdOf(wake)
		if fd < 0 || wfd < 0 {
			p.deliver(received{m: &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_StdinEof{StdinEof: true}}})
			return
		}
	}
	buf := make([]byte, stdioflow.FirstRead)
	for {
		if wake != nil {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(wfd), Events: unix.POLLIN}}
			if _, err := unix.Poll(pfd, -1); err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				break
			}
			if pfd[1].Revents != 0 {
				return // the exec ended
			}
		}
		k, err := p.stdin.Read(buf)
		if k > 0 {
			// As the target's pump: a large read handed over, a small
			// one copied.
			b := buf[:k]
			if next := stdioflow.NextRead(len(buf), k); next != len(buf) || k >= stdioflow.Chunk/2 {
				buf = make([]byte, next)
			} else {
				b = append([]byte(nil), b...)
			}
			if !p.deliver(received{m: &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Stdin{Stdin: b}}}) {
				return
			}
		}
		if err != nil {
			break
		}
	}
	p.deliver(received{m: &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_StdinEof{StdinEof: true}}})
}

// fdOf returns f's descriptor without changing its mode (f.Fd would make
// a non-blocking one blocking), or -1.
func fdOf(f *os.File) int {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if rc.Control(func(x uintptr) { fd = int(x) }) != nil {
		return -1
	}
	return fd
}

// writeOutput writes the output in the order it came; after a failed
// write to a file (its reader gone) the rest of that file's is dropped,
// as the client does, and a reader gone breaks the output for the
// program (see broken).
func (p *passedStream) writeOutput() {
	var failed uint32
	for {
		select {
		case w := <-p.writes:
			if w.flush != nil {
				close(w.flush)
				continue
			}
			bit := uint32(passedStdout)
			if w.f == p.stderr {
				bit = passedStderr
			}
			if failed&bit == 0 {
				if _, err := w.f.Write(w.b); err != nil {
					failed |= bit
					if errors.Is(err, syscall.EPIPE) {
						p.broken.Or(bit)
						p.brokenAt.CompareAndSwap(0, p.clock().UnixNano())
						p.closed <- bit // room for each bit once
					}
				}
			}
		case <-p.stop:
			return
		}
	}
}

// Recv returns the caller's next input: an output broken first, then
// the caller's messages and the passed stdin, in order.
func (p *passedStream) Recv() (*vprocv1.ExecInput, error) {
	select {
	case bit := <-p.closed:
		return outputClosed(bit), nil
	default:
	}
	select {
	case bit := <-p.closed:
		return outputClosed(bit), nil
	case r := <-p.in:
		return r.m, r.err
	case <-p.stop:
		return nil, context.Canceled
	}
}

func outputClosed(bit uint32) *vprocv1.ExecInput {
	return &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_OutputClosed{OutputClosed: bit}}
}

// brokenSlack is how much output may still come for a broken output
// before the exec is ended (see passedStream.broken): more than can be
// under way when the program's end of the pipe is closed (the program's
// 1 MiB pipe, the runner's read, a stream's 2 MiB window and its
// buffers, the write queue), with room for what a fast writer makes while
// the OutputClosed travels.
const brokenSlack = 64 << 20

// brokenGrace is how long after an output broke its output may still
// come: what was under way when the program's end was closed arrives in
// far less; output later than that means the close never reached the
// program, and a slow writer (tail -f) would otherwise run for ever.
const brokenGrace = 2 * time.Second

func (p *passedStream) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}

// drop drops n bytes of a broken output; past brokenSlack, or
// brokenGrace after the break, it ends the exec.
func (p *passedStream) drop(n int) error {
	p.dropped += n
	late := false
	if at := p.brokenAt.Load(); at != 0 {
		late = p.clock().Sub(time.Unix(0, at)) > brokenGrace
	}
	if p.dropped > brokenSlack || late {
		p.killOnce.Do(func() {
			close(p.killed)
			p.cancel()
		})
	}
	return nil
}

func (p *passedStream) queue(w outWrite) error {
	select {
	case p.writes <- w:
		return nil
	case <-p.ctx.Done():
		return p.ctx.Err()
	case <-p.stop:
		return context.Canceled
	}
}

// brokenExit is the status of a caller killed by SIGPIPE.
func brokenExit() *vprocv1.ExecOutput {
	return exitOf(128+int(syscall.SIGPIPE), int(syscall.SIGPIPE), "")
}

func (p *passedStream) isKilled() bool {
	select {
	case <-p.killed:
		return true
	default:
		return false
	}
}

// endBroken sends the caller the status of a death by SIGPIPE when a
// broken output ended the exec and the exec ended without sending an
// exit (the caller's end of a remote exec: its context was cancelled).
func (p *passedStream) endBroken() {
	if p.isKilled() && !p.exitSent {
		p.exitSent = true
		_ = p.Vproc_ExecServer.Send(brokenExit())
	}
}

// Send writes output to the passed files; the exit goes to the caller
// once all output before it was written (after a broken output ended the
// exec, the status of a death by SIGPIPE instead).
func (p *passedStream) Send(m *vprocv1.ExecOutput) error {
	if p.isKilled() {
		if m.GetExit() == nil {
			return nil // dropped, as the caller would have died
		}
		p.exitSent = true
		return p.Vproc_ExecServer.Send(brokenExit())
	}
	switch k := m.Kind.(type) {
	case *vprocv1.ExecOutput_Started:
		// The caller streams what this vprocd did not say it took (a
		// vprocd older than file passing says nothing).
		k.Started.PassedStdio = p.mask
	case *vprocv1.ExecOutput_Stdout:
		if p.stdout != nil && p.writes != nil {
			if p.broken.Load()&passedStdout != 0 {
				return p.drop(len(k.Stdout))
			}
			return p.queue(outWrite{f: p.stdout, b: k.Stdout})
		}
	case *vprocv1.ExecOutput_Stderr:
		if p.stderr != nil && p.writes != nil {
			if p.broken.Load()&passedStderr != 0 {
				return p.drop(len(k.Stderr))
			}
			return p.queue(outWrite{f: p.stderr, b: k.Stderr})
		}
	case *vprocv1.ExecOutput_Exit:
		if p.writes != nil {
			done := make(chan struct{})
			if err := p.queue(outWrite{flush: done}); err != nil {
				return err
			}
			select {
			case <-done:
			case <-p.ctx.Done():
				return p.ctx.Err()
			}
			if p.isKilled() {
				m = brokenExit()
			}
		}
		p.exitSent = true
	}
	return p.Vproc_ExecServer.Send(m)
}
