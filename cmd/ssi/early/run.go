package early

import (
	"os"
	"sync"
	"syscall"

	"github.com/openssi/openssi/internal/execwire"
)

// The run of an exec started early, all of it before ssi's other packages
// are initialised, for the usual course: the program started, its output
// that vprocd sends (its stdout and stderr that were not passed), its
// stdin that was not passed sent, signals passed on, its exit status
// ssi's. Anything else (a refusal, the program not started) goes back to
// ssi, whose messages and statuses it is.

// exitLost is ssi exec's status when the program's node or the connection
// to vprocd was lost (client/vproc's ExitLost).
const exitLost = 255

// lost begins the line of a lost exec as ssi exec prints it (client/vproc's
// ErrLost).
const lost = "ssi exec: vproc: lost the program's node or connection: "

// stdinChunk is the most stdin one frame carries (stdioflow.Chunk).
const stdinChunk = 256 << 10

// run waits for vprocd's first answer; when it is the program's start, it
// runs the exec to its end and exits with its status; otherwise it keeps
// the answer in First and returns.
func (e *Exec) run() {
	f, err := readFrame(e.FD)
	if err != nil {
		return // ssi reads the connection again and says so
	}
	e.First = f
	if f.Kind != execwire.KindOutput {
		return
	}
	o, err := execwire.DecodeOutput(f.Msg)
	if err != nil || o.Kind != execwire.OutStarted || o.PassedStdio != e.Passed {
		return
	}
	w := &writer{fd: e.FD}
	if e.Passed&1 == 0 {
		go w.stdin()
	}
	go func() {
		for sig := range e.Signals {
			w.frame(execwire.AppendSignalFrame(nil, int32(sig.(syscall.Signal))))
		}
	}()
	os.Exit(e.output())
}

// output writes the program's output until its exit and returns ssi's
// status.
func (e *Exec) output() int {
	var werr [execwire.OutStderr + 1]error // a failed write: that output is dropped from then on
	for {
		f, err := readFrame(e.FD)
		if err != nil {
			os.Stderr.WriteString(lost + err.Error() + "\n")
			return exitLost
		}
		if f.Kind == execwire.KindStatus {
			_, msg, _ := execwire.DecodeStatus(f.Msg)
			os.Stderr.WriteString(lost + oneLine(msg) + "\n")
			return exitLost
		}
		o, err := execwire.DecodeOutput(f.Msg)
		if err != nil || f.Kind != execwire.KindOutput {
			os.Stderr.WriteString(lost + "vprocd sent a frame that does not decode\n")
			return exitLost
		}
		switch o.Kind {
		case execwire.OutStdout, execwire.OutStderr:
			out := os.Stdout
			if o.Kind == execwire.OutStderr {
				out = os.Stderr
			}
			if werr[o.Kind] == nil {
				_, werr[o.Kind] = out.Write(o.Data)
			}
		case execwire.OutExit:
			switch {
			case o.Code == exitLost && o.Reason != "":
				os.Stderr.WriteString(lost + oneLine(o.Reason) + "\n")
			case o.Reason != "":
				os.Stderr.WriteString("ssi exec: " + oneLine(o.Reason) + "\n")
			}
			return int(o.Code)
		}
	}
}

// writer sends the frames after the request; the stdin and the signals
// share the connection.
type writer struct {
	mu sync.Mutex
	fd int
}

func (w *writer) frame(b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(b) > 0 {
		n, err := syscall.SendmsgN(w.fd, b, nil, nil, syscall.MSG_NOSIGNAL)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return // the exec ended; its reader says how
		}
		b = b[n:]
	}
}

// stdin sends descriptor 0 until its end, then ends the program's.
func (w *writer) stdin() {
	buf := make([]byte, stdinChunk)
	for {
		n, err := os.Stdin.Read(buf)
		if n > 0 {
			w.frame(execwire.AppendStdinFrame(nil, buf[:n]))
		}
		if err != nil {
			w.frame(execwire.AppendStdinEOFFrame(nil))
			return
		}
	}
}

// readFrame reads a frame from the blocking connection fd.
func readFrame(fd int) (execwire.Frame, error) {
	var h [execwire.HeaderSize]byte
	if err := readFull(fd, h[:]); err != nil {
		return execwire.Frame{}, err
	}
	kind, n, err := execwire.ParseHeader(h)
	if err != nil {
		return execwire.Frame{}, err
	}
	msg := make([]byte, n)
	if err := readFull(fd, msg); err != nil {
		return execwire.Frame{}, err
	}
	return execwire.Frame{Kind: kind, Msg: msg}, nil
}

// errClosed is vprocd's end of the connection closed before a frame did.
var errClosed = execwire.Error("vprocd closed the connection")

func readFull(fd int, b []byte) error {
	for got := 0; got < len(b); {
		n, err := syscall.Read(fd, b[got:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errClosed
		}
		got += n
	}
	return nil
}

// oneLine joins the words of s with single spaces (ssi's oneLine).
func oneLine(s string) string {
	var b []byte
	word := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' {
			word = false
			continue
		}
		if !word && len(b) > 0 {
			b = append(b, ' ')
		}
		word = true
		b = append(b, c)
	}
	return string(b)
}
