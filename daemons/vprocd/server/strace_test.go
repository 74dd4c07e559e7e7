package server

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/internal/roottest"
)

// lockedBuffer is a bytes.Buffer safe to write and read at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// needStrace skips a test without strace here, or fails it under CI
// (CI=true, as roottest and consultest read it), where build/deps.sh
// installs strace.
func needStrace(t *testing.T) {
	t.Helper()
	if findStrace(straceDirs) != "" {
		return
	}
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal("strace is not installed: install the strace package (build/deps.sh test installs it); CI=true makes this a failure, not a skip")
	}
	t.Skip("strace is not installed (skipped; under CI=true this fails)")
}

// yamaScope is the kernel's Yama ptrace_scope: 0 (classic ptrace rules,
// also without Yama), 1 (only a tracer that is an ancestor of the
// process, or has CAP_SYS_PTRACE: Ubuntu's default), 2 (only with
// CAP_SYS_PTRACE) or 3 (no attach at all).
func yamaScope(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("Yama's ptrace_scope: %v", err)
	}
	return n
}

// needPtrace skips a test whose strace, run as this test's uid, may not
// attach to a process it did not start: under Yama, unless root (with
// CAP_SYS_PTRACE) below scope 3.
func needPtrace(t *testing.T) {
	t.Helper()
	if y := yamaScope(t); y == 3 || y >= 1 && os.Geteuid() != 0 {
		t.Skipf("Yama's ptrace_scope is %d: this test's strace may not trace a process it did not start", y)
	}
}

// writesDevNull is a shell that opens /dev/null every 50ms (a syscall
// strace -e trace=openat shows), in a process group of its own.
func writesDevNull(t *testing.T, cred *syscall.Credential, rounds int) *exec.Cmd {
	t.Helper()
	loop := "while :; do echo x >/dev/null; sleep 0.05; done"
	if rounds > 0 {
		loop = "i=0; while [ $i -lt " + strconv.Itoa(rounds) + " ]; do echo x >/dev/null; sleep 0.05; i=$((i+1)); done"
	}
	cmd := exec.Command("sh", "-c", loop)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd
}

// traceUntil traces x through node from's vprocd until its output holds
// want, then Ctrl-C: strace must end with 130 and leave the process
// running, no longer traced.
func traceUntil(t *testing.T, c *testCluster, from uint32, x int64, pid int, want string, args ...string) {
	t.Helper()
	var out lockedBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := c.client(from).Strace(ctx, x, args, vproc.Cmd{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Dir: "/"})
	if err != nil {
		t.Fatalf("strace %s from node %d: %v", cpid.CPID(x), from, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("strace %s from node %d: no %q in 10s:\n%s", cpid.CPID(x), from, want, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	st, err := p.Wait()
	if err != nil || st.Code != 128+int(syscall.SIGINT) {
		t.Fatalf("strace after Ctrl-C: %+v %v, want 130\n%s", st, err, out.String())
	}
	if !strings.Contains(out.String(), "detached") {
		t.Errorf("strace did not say it detached:\n%s", out.String())
	}
	if !alive(pid) {
		t.Fatalf("the traced process %d died with strace", pid)
	}
	if tracer := tracerPID(t, pid); tracer != 0 {
		t.Fatalf("the process %d is still traced by %d after strace ended", pid, tracer)
	}
}

// tracerPID is the TracerPid of pid.
func tracerPID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "TracerPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatalf("no TracerPid in /proc/%d/status", pid)
	return 0
}

// TestStrace: ssi strace finds the process where it runs, through the
// node that answers for its cpid, and streams strace's trace of it: a
// plain process of node 1 traced from node 2, a program started on node
// 2 from node 1 traced from nodes 1 and 3, and one whose origin went
// DOWN traced from a survivor.
func TestStrace(t *testing.T) {
	needStrace(t)
	needPtrace(t)
	c := startCluster(t, 3)

	plain := writesDevNull(t, nil, 0)
	traceUntil(t, c, 2, CPID(1, plain.Process.Pid), plain.Process.Pid, `"/dev/null"`, "-e", "trace=openat")

	p, err := c.client(1).Exec(context.Background(), 2, vproc.Cmd{Detach: true, Dir: "/",
		Args: []string{"sh", "-c", "while :; do echo x >/dev/null; sleep 0.05; done"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(p.Pid, syscall.SIGKILL) })
	for _, from := range []uint32{1, 3} {
		traceUntil(t, c, from, p.Cpid, p.Pid, `"/dev/null"`, "-e", "trace=openat")
	}

	// The origin (node 1) DOWN: its surrogate answers for the program
	// it started on node 2.
	x, pid, breakLink := originLink(t, c, 4242, false)
	breakLink()
	time.Sleep(200 * time.Millisecond)
	for n := uint32(2); n <= 3; n++ {
		c.node(n).srv.Membership(1, false)
	}
	traceUntil(t, c, 3, int64(x), pid, "attached")
}

// TestStraceRefusals: each failure is one line and a distinct error,
// before any strace runs: this needs neither strace nor ptrace.
func TestStraceRefusals(t *testing.T) {
	c := startCluster(t, 2)
	target := writesDevNull(t, nil, 0)
	x := CPID(1, target.Process.Pid)
	try := func(x int64, args ...string) error {
		t.Helper()
		p, err := c.client(2).Strace(context.Background(), x, args, vproc.Cmd{Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}})
		if err == nil {
			p.Signal(syscall.SIGKILL)
			p.Wait()
		}
		return err
	}
	if err := try(CPID(1, 4194303)); !errors.Is(err, vproc.ErrNoProcess) {
		t.Errorf("an unknown cpid: %v, want ErrNoProcess", err)
	}
	tooMany := make([]string, 257)
	for i := range tooMany {
		tooMany[i] = "-f"
	}
	for _, args := range [][]string{{"-p", "1"}, {"--attach=1"}, {"ls"}, {"--", "ls"}, {"-e"},
		{"-o", "|cat"}, {"-fo!cat"}, {"--output=|cat"}, {"--out", "!cat"}, {"-u", "nobody"}, {"-EA=1"}, {"--user=nobody"}, {"--env=A=1"}, tooMany} {
		err := try(x, args...)
		if !errors.Is(err, vproc.ErrRefused) || !strings.Contains(err.Error(), "strace") || strings.Contains(err.Error(), "\n") {
			t.Errorf("strace args %.40q: %v, want one line and ErrRefused", args, err)
		}
	}
	old := straceDirs
	straceDirs = []string{t.TempDir()}
	defer func() { straceDirs = old }()
	var se *vproc.StartError
	if err := try(x); !errors.As(err, &se) || se.Status.Code != vproc.ExitNotFound || se.Status.Reason != "strace is not installed on node 1: install the strace package there" {
		t.Errorf("strace not installed: %v, want a StartError 127 saying to install strace", err)
	}
}

// TestStraceAsTheCaller: strace runs as its caller, never as root for a
// caller that is not: uid 65534 is refused root's process (one line,
// exit 3) and traces its own with an strace of uid 65534, where the
// kernel lets it: under Yama (ptrace_scope 1 and up) an strace of uid
// 65534 may not attach to a process it did not start, and fails as
// strace does (exit 1, EPERM), which shows it is not root.
func TestStraceAsTheCaller(t *testing.T) {
	roottest.Need(t)
	needStrace(t)
	yama := yamaScope(t)
	c := startCluster(t, 2)
	roots := writesDevNull(t, nil, 0)
	out, code := killAs(t, c, 65534, signalCall{Socket: c.node(2).socket, Strace: CPID(1, roots.Process.Pid)})
	if code != 3 || !strings.Contains(out, "uid 65534 may not trace process") || strings.Count(out, "\n") != 1 {
		t.Errorf("uid 65534 tracing root's process: exit %d %q, want 3 and one line", code, out)
	}

	own := writesDevNull(t, &syscall.Credential{Uid: 65534, Gid: 65534}, 40)
	pid := own.Process.Pid
	call := signalCall{Socket: c.node(2).socket, Strace: CPID(1, pid), StraceArgs: []string{"-e", "trace=openat"}}
	if yama != 0 {
		out, code := killAs(t, c, 65534, call)
		if code != 1 || !strings.Contains(out, "Operation not permitted") {
			t.Errorf("Yama's ptrace_scope is %d: uid 65534 tracing its own process: exit %d %q, want strace's 1 and EPERM", yama, code, out)
		}
		if tracer := tracerPID(t, pid); tracer != 0 {
			t.Errorf("Yama's ptrace_scope is %d: process %d is traced by %d", yama, pid, tracer)
		}
		return
	}
	helper := signalHelperCmd(t, c, 65534, call)
	var hout lockedBuffer
	helper.Stdout, helper.Stderr = &hout, &hout
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- helper.Wait() }()
	// While it traces: strace's uids are all 65534.
	uids := ""
	for deadline := time.Now().Add(10 * time.Second); uids == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		uids = straceUIDs(pid)
	}
	if uids != "65534 65534 65534 65534" {
		t.Errorf("the strace of uid 65534 runs with uids %q, want 65534 (real, effective, saved, fs)", uids)
	}
	select {
	case err := <-done:
		if err != nil || !strings.Contains(hout.String(), `"/dev/null"`) {
			t.Errorf("uid 65534 tracing its own process: %v\n%s", err, hout.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("strace did not end with the process it traced:\n%s", hout.String())
	}
}

// straceUIDs are the uids (real, effective, saved, fs) of the strace
// attached to pid, or "" when there is none.
func straceUIDs(pid int) string {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) < 3 || filepath.Base(args[0]) != "strace" || args[1] != "-p" || args[2] != strconv.Itoa(pid) {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(line, "Uid:"); ok {
				return strings.Join(strings.Fields(v), " ")
			}
		}
	}
	return ""
}
