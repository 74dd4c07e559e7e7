package cfsmount

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// PjdfstestEnv names the environment variable that points
// TestPjdfstest at a built pjdfstest (test/posix/pjdfstest.sh sets it;
// the suite is not in this repository and CI cannot download it).
const PjdfstestEnv = "CFS_PJDFSTEST"

// TestPjdfstest runs the POSIX conformance suite pjdfstest under `prove`
// inside a fresh mount, when CFS_PJDFSTEST names the suite's built tree;
// it fails when any of the suite's tests fails, and the summary `prove`
// prints is the pass rate recorded in README.
func TestPjdfstest(t *testing.T) {
	suite := os.Getenv(PjdfstestEnv)
	if suite == "" {
		t.Skipf("set %s to a built pjdfstest tree (test/posix/pjdfstest.sh does)", PjdfstestEnv)
	}
	if _, err := os.Stat(filepath.Join(suite, "pjdfstest")); err != nil {
		t.Fatalf("%s=%s: no pjdfstest binary there: %v", PjdfstestEnv, suite, err)
	}
	s := serve(t, Options{Timeout: 10 * time.Second})
	args := []string{"-r", "--timer"}
	if only := os.Getenv("CFS_PJDFSTEST_ONLY"); only != "" {
		args = append(args, "-v", filepath.Join(suite, "tests", only))
	} else {
		args = append(args, filepath.Join(suite, "tests"))
	}
	// Not cmd.Dir: the child would chdir into the mount between fork
	// and exec, where the Go runtime can leave this process unable to
	// answer it (a FUSE server must not be made to serve its own fork's
	// chdir); the shell does it after exec.
	cmd := exec.Command("sh", append([]string{"-c", `cd "$1" && shift && exec prove "$@"`, "sh", s.mnt}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Errorf("prove: %v", err)
	}
}
