// Package vagrant tests the Vagrantfile of this directory: `vagrant validate
// --ignore-provider`, which CI runs (no machine can boot there: no KVM).
// It holds no Go code of its own.
package vagrant

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
)

func TestValidate(t *testing.T) {
	if _, err := exec.LookPath("vagrant"); err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatal("vagrant not found: CI installs it (build/deps.sh ansible)")
		}
		t.Skip("vagrant not found: apt-get install vagrant (build/deps.sh ansible)")
	}
	for _, env := range [][]string{
		nil,
		{"OPENSSI_NODES=5", "OPENSSI_EL=0"},
		{"OPENSSI_NODES=1"},
	} {
		cmd := exec.Command("vagrant", "validate", "--ignore-provider")
		cmd.Env = append(append(os.Environ(), "VAGRANT_CWD=.", "VAGRANT_HOME="+t.TempDir(), "VAGRANT_CHECKPOINT_DISABLE=1"), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("vagrant validate --ignore-provider %v: %v\n%s", env, err, out)
		}
	}
}
