package server

import (
	"bytes"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/openssi/openssi/daemons/vprocd/straceargs"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// Bounds of a request: what execve(2) would refuse anyway, checked before
// anything is looked up.
const (
	// MaxArgBytes bounds argv and env together (bytes plus one NUL each),
	// Linux's usual ARG_MAX.
	MaxArgBytes = 2 << 20
	// MaxChunk bounds one stdin chunk.
	MaxChunk = 1 << 20
	// MaxGroups is the kernel's NGROUPS_MAX.
	MaxGroups = 65536
)

// Signals a caller may send to its program (the others are the kernel's
// or a debugger's business).
var allowedSignals = map[int32]bool{
	int32(unix.SIGINT): true, int32(unix.SIGTERM): true, int32(unix.SIGHUP): true, int32(unix.SIGQUIT): true,
	int32(unix.SIGKILL): true, int32(unix.SIGUSR1): true, int32(unix.SIGUSR2): true, int32(unix.SIGWINCH): true,
	int32(unix.SIGCONT): true, int32(unix.SIGTSTP): true,
}

// CheckRequest returns why an exec request cannot be run, or nil.
func CheckRequest(r *vprocv1.ExecRequest) error {
	if r == nil {
		return fmt.Errorf("vproc: the first message must be the request")
	}
	// Counts and sizes first, in time linear in the request; what the
	// strace options say (checkTrace) only once they are within bounds.
	total := 0
	if r.Trace != nil {
		if len(r.Argv) != 0 {
			return fmt.Errorf("vproc: a trace request with a command")
		}
		if n := len(r.Trace.Args); n > straceargs.MaxArgs {
			return fmt.Errorf("vproc: %d strace options, more than %d", n, straceargs.MaxArgs)
		}
		for _, a := range r.Trace.Args {
			if bytes.IndexByte(a, 0) >= 0 {
				return fmt.Errorf("vproc: an strace argument holds a NUL byte")
			}
			total += len(a) + 1
		}
	} else if len(r.Argv) == 0 || len(r.Argv[0]) == 0 {
		return fmt.Errorf("vproc: no command given")
	}
	for _, a := range r.Argv {
		if bytes.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("vproc: an argument holds a NUL byte")
		}
		total += len(a) + 1
	}
	for _, e := range r.Env {
		if bytes.IndexByte(e, 0) >= 0 {
			return fmt.Errorf("vproc: an environment entry holds a NUL byte")
		}
		if k, _, ok := bytes.Cut(e, []byte("=")); !ok || len(k) == 0 {
			return fmt.Errorf("vproc: environment entry %.40q is not KEY=VALUE", e)
		}
		total += len(e) + 1
	}
	if total > MaxArgBytes {
		return fmt.Errorf("vproc: arguments and environment take %d bytes, more than %d", total, MaxArgBytes)
	}
	if bytes.IndexByte(r.Cwd, 0) >= 0 {
		return fmt.Errorf("vproc: the directory holds a NUL byte")
	}
	if err := checkSize(r.Size); err != nil {
		return err
	}
	if r.PassedStdio&^passedAll != 0 {
		return fmt.Errorf("vproc: passed stdio %#x: only stdin (1), stdout (2) and stderr (4)", r.PassedStdio)
	}
	if r.PassedStdio != 0 && (r.Tty || r.Detach) {
		return fmt.Errorf("vproc: stdio passed with a terminal or detached")
	}
	if r.Migratable && (r.Tty || r.Detach || r.Trace != nil) {
		return fmt.Errorf("vproc: a migratable program with a terminal, detached or traced")
	}
	if r.Trace != nil {
		return checkTrace(r.Trace)
	}
	return nil
}

func checkSize(w *vprocv1.WindowSize) error {
	if w != nil && (w.Rows > 0xffff || w.Cols > 0xffff) {
		return fmt.Errorf("vproc: window size %dx%d is too large", w.Rows, w.Cols)
	}
	return nil
}

// CheckInput returns why a message after the request is refused, or nil.
func CheckInput(in *vprocv1.ExecInput) error {
	switch k := in.GetKind().(type) {
	case *vprocv1.ExecInput_Stdin:
		if len(k.Stdin) > MaxChunk {
			return fmt.Errorf("vproc: a stdin chunk of %d bytes is over %d", len(k.Stdin), MaxChunk)
		}
	case *vprocv1.ExecInput_StdinEof:
	case *vprocv1.ExecInput_Signal:
		if !allowedSignals[k.Signal] {
			return fmt.Errorf("vproc: signal %d may not be sent to a program", k.Signal)
		}
	case *vprocv1.ExecInput_Resize:
		return checkSize(k.Resize)
	case *vprocv1.ExecInput_OutputClosed:
		if k.OutputClosed == 0 || k.OutputClosed&^(passedStdout|passedStderr) != 0 {
			return fmt.Errorf("vproc: output_closed %d is not stdout (2) and/or stderr (4)", k.OutputClosed)
		}
	case *vprocv1.ExecInput_Start:
		return fmt.Errorf("vproc: a second request on one stream")
	default:
		return fmt.Errorf("vproc: an empty message")
	}
	return nil
}

// CheckStart returns why a peer's start is refused, or nil (the origin's
// identity is checked against its certificate separately).
func CheckStart(s *vprocpeerv1.Start, self uint32) error {
	if s == nil {
		return fmt.Errorf("vproc: the first peer message must be the start")
	}
	if s.Caller == nil {
		return fmt.Errorf("vproc: a start without a caller")
	}
	if len(s.Caller.Groups) > MaxGroups {
		return fmt.Errorf("vproc: %d supplementary groups, more than %d", len(s.Caller.Groups), MaxGroups)
	}
	if err := CheckRequest(s.Request); err != nil {
		return err
	}
	if s.Request.PassedStdio != 0 {
		return fmt.Errorf("vproc: a peer's request with stdio passed")
	}
	if s.Request.Node != self {
		return fmt.Errorf("vproc: a request for node %d reached node %d", s.Request.Node, self)
	}
	return nil
}
