package criuhold

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openssi/openssi/internal/roottest"
)

// startHolder runs this test binary as a holder, as vprocd does (first
// process of a fresh PID and mount namespace), with criu replaced by
// fake, one pipe passed on as descriptor 4; it returns the holder's
// report lines and the pipe's other end.
func startHolder(t *testing.T, pidfile string, fake ...string) (lines <-chan string, passed *os.File) {
	t.Helper()
	roottest.Need(t)
	statusR, statusW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: append([]string{Name}, Args(pidfile, 1, fake)...),
		ExtraFiles:  []*os.File{statusW, w},
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS, Setsid: true}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	statusW.Close()
	w.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); r.Close() })
	out := make(chan string, 8)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(statusR)
		for sc.Scan() {
			out <- sc.Text()
		}
	}()
	return out, r
}

func next(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l := <-lines:
		return l
	case <-time.After(30 * time.Second):
		t.Fatal("no report from the holder")
		return ""
	}
}

// TestHolderReportsAndReaps: the holder runs "criu" with the passed
// descriptor, reports the pid it wrote (in the holder's namespace: the
// detached child, whose parent is now the holder), and reports its exit
// when it ends.
func TestHolderReportsAndReaps(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pid")
	lines, passed := startHolder(t, pidfile, "/bin/sh", "-c", `echo restored >&4; (exec sleep 0.2; exit 3) & echo $! > "$0"`, pidfile)
	first := next(t, lines)
	if !strings.HasPrefix(first, "pid ") || first == "pid 1" {
		t.Fatalf("first report %q, want the detached child's pid", first)
	}
	if got := next(t, lines); got != "exit 0" {
		t.Fatalf("then %q, want exit 0 (sleep's status)", got)
	}
	b, _ := io.ReadAll(passed)
	if string(b) != "restored\n" {
		t.Errorf("the passed descriptor got %q", b)
	}
}

// TestHolderFails: criu's failure is one report line with its last line
// of output; so is a pid file without a pid.
func TestHolderFails(t *testing.T) {
	dir := t.TempDir()
	lines, _ := startHolder(t, filepath.Join(dir, "pid"), "/bin/sh", "-c", "echo first; echo 'Error (criu/cr-restore.c:1): boom' >&2; exit 1")
	if got, want := next(t, lines), "fail criu restore: exit status 1: Error (criu/cr-restore.c:1): boom"; got != want {
		t.Errorf("report %q, want %q", got, want)
	}
	lines, _ = startHolder(t, filepath.Join(dir, "none"), "/bin/true")
	if got := next(t, lines); !strings.HasPrefix(got, "fail no restored pid in ") {
		t.Errorf("report %q, want no restored pid", got)
	}
	lines, _ = startHolder(t, filepath.Join(dir, "pid"), filepath.Join(dir, "no-criu"))
	if got := next(t, lines); !strings.HasPrefix(got, "fail criu restore: start ") {
		t.Errorf("report %q, want criu not started", got)
	}
}
