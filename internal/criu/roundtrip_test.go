package criu_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openssi/openssi/internal/criu"
	"github.com/openssi/openssi/internal/roottest"
)

// counterLoop is an unmodified program: a bash loop appending "PID N" to
// the file count once every 20 ms, with the PID as the kernel tells it now
// ($BASHPID is getpid() at each expansion, not a value kept in memory).
const counterLoop = `i=0; while :; do i=$((i+1)); echo "$BASHPID $i" >> count; sleep 0.02; done`

// closeInheritedOnExec marks every descriptor this test process inherited
// (beyond stdio) close-on-exec, so the loop gets none of them: a runner
// such as `flock LOCK make test` leaves its locked file open in every
// child, and CRIU refuses to dump a task holding a file lock it was not
// asked to dump.
func closeInheritedOnExec(t *testing.T) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// TestRoundTrip checkpoints a running bash loop with `criu dump` and
// restores it with `criu restore -d` into a fresh PID namespace while its
// old PID is still taken on the host, as the issue asks of the CRIU on a
// node: the loop goes on counting from where it was, with its PID, and no
// count is lost or repeated. It needs root and
// the CRIU of `make criu` named by CRIU_BIN; without CRIU_BIN it is skipped.
func TestRoundTrip(t *testing.T) {
	roottest.Need(t, "unshare", "bash")
	bin := os.Getenv(criu.BinEnv)
	if bin == "" {
		t.Skipf("skipped: %s is not set (make criu builds the pinned CRIU; make integration sets %s to it)", criu.BinEnv, criu.BinEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st := criu.Detect(ctx, criu.Exec{}, bin)
	if st.Status != criu.Ready {
		t.Fatalf("CRIU at %s is not ready: %v", bin, st)
	}
	t.Logf("criu: %v", st)

	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	if err := os.Mkdir(img, 0o700); err != nil {
		t.Fatal(err)
	}
	count := filepath.Join(dir, "count")
	closeInheritedOnExec(t)
	loop := exec.Command("bash", "-c", counterLoop)
	loop.Dir = dir
	loop.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no terminal: no --shell-job
	if err := loop.Start(); err != nil {
		t.Fatal(err)
	}
	pid := loop.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL); _ = loop.Wait() })
	waitLines(t, count, 5)

	start := time.Now()
	out, err := exec.CommandContext(ctx, bin, criu.DumpArgs(pid, img, false)...).CombinedOutput()
	dumpTook := time.Since(start)
	if err != nil {
		t.Fatalf("criu dump: %v: %s\n%s", err, out, logTail(img, "dump.log"))
	}
	// The dump ends the loop, which stays an unreaped zombie holding its
	// PID on the host until the restore is done: on the host the restore
	// would fail ("Can't fork for PID: File exists"); in the fresh PID
	// namespace the PID is free.
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || !bytes.Contains(st, []byte(") Z ")) {
		t.Fatalf("the dumped loop (PID %d) is not a zombie: %q, %v", pid, st, err)
	}
	before := readCounts(t, count)
	last := before[len(before)-1]

	status := filepath.Join(dir, "restore.status")
	name, args := criu.InFreshPIDNamespace(bin, criu.RestoreArgs(img, filepath.Join(dir, "restored.pid"), false), status)
	holder := exec.Command(name, args...)
	holder.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var holderOut bytes.Buffer
	holder.Stdout, holder.Stderr = &holderOut, &holderOut
	start = time.Now()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	// Killing the namespace's init (the holder's child) ends the restored
	// loop with it; the holder's process group holds both.
	t.Cleanup(func() { _ = syscall.Kill(-holder.Process.Pid, syscall.SIGKILL); _ = holder.Wait() })
	code := waitFile(t, status)
	restoreTook := time.Since(start)
	if code != "0" {
		t.Fatalf("criu restore exited with status %s: %s\n%s", code, holderOut.String(), logTail(img, "restore.log"))
	}
	t.Logf("dump %v, restore in a fresh PID namespace %v (unshare + criu restore -d, wall)", dumpTook.Round(time.Millisecond), restoreTook.Round(time.Millisecond))
	_ = loop.Wait()

	after := waitLines(t, count, len(before)+5)
	for i, c := range after[len(before):] {
		if c.pid != last.pid {
			t.Errorf("restored loop writes PID %d, want its own PID %d", c.pid, last.pid)
		}
		if want := last.n + 1 + i; c.n != want {
			t.Fatalf("after the restore count %d, want %d (the loop stopped at %d): a count lost or repeated", c.n, want, last.n)
		}
	}
}

type countLine struct{ pid, n int }

func readCounts(t *testing.T, path string) []countLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []countLine
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" {
			continue
		}
		var c countLine
		if _, err := fmt.Sscanf(l, "%d %d", &c.pid, &c.n); err != nil {
			t.Fatalf("count line %q: %v", l, err)
		}
		out = append(out, c)
	}
	return out
}

// waitLines polls path (the loop appends every 20 ms) until it has at
// least n complete lines, for at most 20s.
func waitLines(t *testing.T, path string, n int) []countLine {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 && bytes.Count(b[:i+1], []byte("\n")) >= n {
			return readCounts(t, path)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d lines after 20s, want %d", path, bytes.Count(b, []byte("\n")), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFile polls for the restore's status file, for at most 30s.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no restore status in %s after 30s", path)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func logTail(dir, name string) string {
	b, _ := os.ReadFile(filepath.Join(dir, name))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return name + ":\n" + string(b)
}
