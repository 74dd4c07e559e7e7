package cli

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

func TestMigrateCLI(t *testing.T) {
	dir := startVprocd(t)
	sleep := exec.Command("sleep", "1000")
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
		{[]string{"migrate", x}, exitUsage, "usage: ssi migrate CPID NODE"},
		{[]string{"migrate", "bogus", "2"}, exitUsage, ""},
		{[]string{"migrate", x, "0"}, exitUsage, "want a node number"},
		{[]string{"migrate", gone, "2"}, exitNoProcess, "no process"},
		{[]string{"migrate", x, "2"}, exitNotMigratable, "--migratable"},
		{[]string{"exec", "--migratable", "-t", "--", "true"}, exitUsage, "--migratable with -t"},
	} {
		var out, errs bytes.Buffer
		code := Main(append([]string{"--run-dir", dir}, tc.args...), &out, &errs)
		if code != tc.code || !strings.Contains(out.String()+errs.String(), tc.says) || strings.Count(errs.String(), "\n") > 1 {
			t.Errorf("ssi %q: exit %d, stdout %q stderr %q; want %d and %q", tc.args, code, out.String(), errs.String(), tc.code, tc.says)
		}
	}
}
