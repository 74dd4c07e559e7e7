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

func TestStraceCommand(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace is not installed")
	}
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

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"strace", strconv.Itoa(1<<22 | 4194303)}, exitNoProcess, "ssi strace: vproc: no process 8388607 (node 1)"},
		{[]string{"strace"}, exitUsage, "usage: ssi strace CPID"},
		{[]string{"strace", "abc"}, exitUsage, "abc"},
		{[]string{"strace", x, "ls"}, exitUsage, `"ls": not an strace option ssi strace passes on`},
		{[]string{"strace", x, "-p", "1"}, exitUsage, "attaches to CPID only"},
		{[]string{"strace", x, "--", "ls"}, exitUsage, "runs no command"},
	} {
		var out, errs bytes.Buffer
		code := Main(append([]string{"--run-dir", dir}, tc.args...), &out, &errs)
		if code != tc.code || !strings.Contains(errs.String(), tc.want) || strings.Count(errs.String(), "\n") != 1 {
			t.Errorf("ssi %q: exit %d stderr %q, want %d and one line with %q", tc.args, code, errs.String(), tc.code, tc.want)
		}
	}
	errs.Reset()
	if code := Main([]string{"--run-dir", t.TempDir(), "strace", x}, &out, &errs); code != exitNoVprocd {
		t.Errorf("without vprocd: exit %d %q, want %d", code, errs.String(), exitNoVprocd)
	}
}

func TestStraceHelp(t *testing.T) {
	var out, errs bytes.Buffer
	if code := Main([]string{"strace", "--help"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	for _, want := range []string{"ssi strace CPID [STRACE-OPTION]...", "-p/--attach", "127  strace is not installed", "3    permission denied"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ssi strace --help lacks %q", want)
		}
	}
}
