package cli

import (
	"bytes"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

func TestKillAndRenice(t *testing.T) {
	dir := startVprocd(t)
	sleep := exec.Command("sleep", "1000")
	sleep.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleep.Process.Kill(); _ = sleep.Wait() }()
	x := cpid.MustMake(1, int32(sleep.Process.Pid)).String()
	gone := cpid.MustMake(1, cpid.MaxPID).String()
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"renice", "-n", "5", x}, 0, x + ": old nice 0, new nice 5"},
		{[]string{"renice", x}, exitUsage, "-n is required"},
		{[]string{"renice", "-n", "20", x}, exitUsage, "want a nice value"},
		{[]string{"kill", "-s", "0", x}, 0, ""},
		{[]string{"kill", "-s", "BOGUS", x}, exitUsage, "unknown signal"},
		{[]string{"kill", "12"}, exitUsage, "node 0"},
		{[]string{"kill", gone}, exitNoProcess, "no process " + gone},
		{[]string{"kill", "-s", "0", "--", "-" + gone}, exitNoProcess, "no process in group " + gone},
		{[]string{"kill", "-s", "usr1", "--", "-" + x}, 0, ""},
	} {
		var out, errs bytes.Buffer
		code := Main(append([]string{"--run-dir", dir}, tc.args...), &out, &errs)
		if code != tc.code || !strings.Contains(out.String()+errs.String(), tc.says) {
			t.Errorf("ssi %q: exit %d, stdout %q stderr %q; want %d and %q", tc.args, code, out.String(), errs.String(), tc.code, tc.says)
		}
	}
	// SIGUSR1 to its group ended it.
	done := make(chan error, 1)
	go func() { done <- sleep.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGUSR1 {
			t.Errorf("sleep ended with %v, want SIGUSR1", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sleep " + strconv.Itoa(sleep.Process.Pid) + " still runs after kill -s usr1 -- -CPGID")
	}
}
