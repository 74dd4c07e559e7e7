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

// TestWarmGateGoneNoteOnce: a gate that died idle is passed over (start again): the note of a
// missing directory is written to the given stderr once, not per try.
func TestWarmGateGoneNoteOnce(t *testing.T) {
	w, ready, _ := newTestWarm(t, 1, 4, nil)
	w.refill(credKey(self()), self())
	gatePid := waitPid(t, ready)
	if err := syscall.Kill(gatePid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer errR.Close()
	p, err := w.Start(Spec{Argv: []string{"true"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/no/such/dir", Cred: self(),
		Stdio: [3]*os.File{nil, nil, errW}, NotePrefix: "ssi exec: "})
	if err != nil {
		t.Fatal(err)
	}
	errW.Close()
	go io.Copy(io.Discard, p.Stdout)
	p.Open()
	p.CloseStdin()
	p.Wait()
	b, _ := io.ReadAll(errR)
	if n := strings.Count(string(b), "does not exist"); n != 1 {
		t.Fatalf("the note came %d times: %q", n, b)
	}
}

// TestWarmGateGoneNoteFullPipe: as TestWarmGateGoneNoteOnce with the given stderr full (its reader does not read): the
// note's write is bounded by noteWait the first time; the retry writes
// it on a description made blocking, where the deadline does nothing.
func TestWarmGateGoneNoteFullPipe(t *testing.T) {
	w, ready, _ := newTestWarm(t, 1, 4, nil)
	w.refill(credKey(self()), self())
	gatePid := waitPid(t, ready)
	if err := syscall.Kill(gatePid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer errR.Close()
	rc, _ := errW.SyscallConn()
	_ = rc.Control(func(fd uintptr) {
		for {
			if _, err := unix.Write(int(fd), make([]byte, 4096)); err != nil {
				return // EAGAIN: full
			}
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := w.Start(Spec{Argv: []string{"true"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/no/such/dir", Cred: self(),
			Stdio: [3]*os.File{nil, nil, errW}, NotePrefix: "ssi exec: "})
		done <- err
	}()
	select {
	case err := <-done:
		t.Logf("Start returned %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Start still blocked 5 s on the note (noteWait is 1 s)")
	}
}
