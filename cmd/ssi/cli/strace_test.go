package cli

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

// needStrace skips a test without strace on PATH, or fails it under CI
// (CI=true, as consultest and roottest read it): build/deps.sh installs
// strace there, so a missing one is a broken setup, not a reason to skip.
func needStrace(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("strace"); err == nil {
		return
	}
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal("strace is not installed: install the strace package (build/deps.sh installs it); CI=true makes this a failure, not a skip")
	}
	t.Skip("strace is not installed (skipped; under CI=true this fails)")
}

// TestStraceCommand: ssi strace streams strace's trace of a process of
// this node on stderr and ends with it.
func TestStraceCommand(t *testing.T) {
	needStrace(t)
	if b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope"); err == nil && strings.TrimSpace(string(b)) != "0" && os.Geteuid() != 0 {
		t.Skipf("Yama's ptrace_scope is %s: only root may trace a process it did not start", strings.TrimSpace(string(b)))
	}
	dir := startVprocd(t)
	// A process that opens /dev/null 20 times, then exits: strace ends
	// with it.
	target := exec.Command("sh", "-c", "sleep 0.3; i=0; while [ $i -lt 20 ]; do echo x >/dev/null; sleep 0.02; i=$((i+1)); done")
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	defer target.Wait()
	x := strconv.FormatInt(int64(cpid.MustMake(1, int32(target.Process.Pid))), 10)
	var out, errs bytes.Buffer
	code := Main([]string{"--run-dir", dir, "strace", x, "-e", "trace=openat"}, &out, &errs)
	if code != 0 || out.Len() != 0 || !strings.Contains(errs.String(), `"/dev/null"`) || !strings.Contains(errs.String(), "+++ exited with 0 +++") {
		t.Fatalf("ssi strace %s: exit %d stdout %q stderr %q, want 0 and the trace on stderr", x, code, out.String(), errs.String())
	}
}

// TestStraceCommandRefusals: each refusal is one line and its own exit
// status, before any strace runs (none is needed here).
func TestStraceCommandRefusals(t *testing.T) {
	dir := startVprocd(t)
	target := exec.Command("sleep", "60")
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = target.Process.Kill()
		_ = target.Wait()
	})
	x := strconv.FormatInt(int64(cpid.MustMake(1, int32(target.Process.Pid))), 10)
	tooMany := []string{"strace", x}
	for range 257 {
		tooMany = append(tooMany, "-f")
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"strace", strconv.Itoa(1<<22 | 4194303)}, 4, "ssi strace: vproc: no process 8388607 (node 1)"},
		{[]string{"strace"}, exitUsage, "usage: ssi strace CPID"},
		{[]string{"strace", "abc"}, exitUsage, "abc"},
		{[]string{"strace", x, "ls"}, exitUsage, `"ls": not an strace option ssi strace passes on`},
		{[]string{"strace", x, "-p", "1"}, exitUsage, "attaches to CPID only"},
		{[]string{"strace", x, "--", "ls"}, exitUsage, "runs no command"},
		{[]string{"strace", x, "-o", "|cat"}, exitUsage, "pipe its output to a command"},
		{[]string{"strace", x, "-fo!cat"}, exitUsage, "pipe its output to a command"},
		{[]string{"strace", x, "--out=|cat"}, exitUsage, "pipe its output to a command"},
		{[]string{"strace", x, "-u", "nobody"}, exitUsage, "-u sets up a command strace runs"},
		{[]string{"strace", x, "--env=A=1"}, exitUsage, "--user and --env set up a command"},
		{tooMany, exitUsage, "257 strace options, more than 256"},
	} {
		var out, errs bytes.Buffer
		code := Main(append([]string{"--run-dir", dir}, tc.args...), &out, &errs)
		if code != tc.code || !strings.Contains(errs.String(), tc.want) || strings.Count(errs.String(), "\n") != 1 {
			t.Errorf("ssi %.60q: exit %d stderr %q, want %d and one line with %q", tc.args, code, errs.String(), tc.code, tc.want)
		}
	}
	var out, errs bytes.Buffer
	if code := Main([]string{"--run-dir", t.TempDir(), "strace", x}, &out, &errs); code != exitNoVprocd {
		t.Errorf("without vprocd: exit %d %q, want %d", code, errs.String(), exitNoVprocd)
	}
}

func TestStraceHelp(t *testing.T) {
	var out, errs bytes.Buffer
	if code := Main([]string{"strace", "--help"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	for _, want := range []string{"ssi strace CPID [STRACE-OPTION]...", "-p/--attach", "127  strace is not installed", "3    permission denied",
		"4    no such process", "-o |CMD and -o !CMD", "-u/--user and -E/--env", "at most 256"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ssi strace --help lacks %q", want)
		}
	}
}
