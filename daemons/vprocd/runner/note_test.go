package runner

import (
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// deadGateStart returns a Warm whose only idle gate has died, a stderr
// pipe (its read end closed at the test's end) and the Spec of a program
// asked to run in a missing directory with that stderr: its start passes
// the dead gate over and starts again, with a note to write.
func deadGateStart(t *testing.T) (*Warm, *os.File, *os.File, Spec) {
	t.Helper()
	w, ready, _ := newTestWarm(t, 1, 4, nil)
	w.refill(credKey(self()), self())
	if err := syscall.Kill(waitPid(t, ready), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { errR.Close() })
	return w, errR, errW, Spec{Argv: []string{"true"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/no/such/dir", Cred: self(),
		Stdio: [3]*os.File{nil, nil, errW}, NotePrefix: "ssi exec: "}
}

// TestWarmGateGoneNoteOnce: a gate that died idle is passed over (start
// again): the note of a missing directory is written to the given stderr
// once, not per try.
func TestWarmGateGoneNoteOnce(t *testing.T) {
	w, errR, errW, spec := deadGateStart(t)
	p, err := w.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	errW.Close()
	go func() { _, _ = io.Copy(io.Discard, p.Stdout) }()
	p.Open()
	p.CloseStdin()
	_ = p.Wait()
	b, _ := io.ReadAll(errR)
	if n := strings.Count(string(b), "does not exist"); n != 1 {
		t.Fatalf("the note came %d times: %q", n, b)
	}
}

// TestWarmGateGoneNoteFullPipe: as TestWarmGateGoneNoteOnce with the
// given stderr full (its reader does not read): the note's write is
// bounded by noteWait, once; a second write on the description made
// blocking, where the deadline does nothing, would block for ever.
func TestWarmGateGoneNoteFullPipe(t *testing.T) {
	w, _, errW, spec := deadGateStart(t)
	rc, err := errW.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	_ = rc.Control(func(fd uintptr) {
		for {
			if _, err := unix.Write(int(fd), make([]byte, 4096)); err != nil {
				return // EAGAIN: full
			}
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := w.Start(spec)
		done <- err
	}()
	select {
	case err := <-done:
		t.Logf("Start returned %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Start still blocked 5 s on the note (noteWait is 1 s)")
	}
}
