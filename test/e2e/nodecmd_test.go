//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/lab"
)

// runOn runs args in a lab node within timeout and returns its combined
// output and exit status; a command that could not be run at all fails t.
func runOn(t *testing.T, l *lab.Lab, timeout time.Duration, node string, args ...string) (string, int) {
	t.Helper()
	cmd, err := l.Command(ctxFor(t, timeout), node, args...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("%s: %s: %v\n%s", node, strings.Join(args, " "), err, out)
	}
	return string(out), 0
}

// mustOn is runOn for a command that must succeed: its output.
func mustOn(t *testing.T, l *lab.Lab, timeout time.Duration, node string, args ...string) string {
	t.Helper()
	out, code := runOn(t, l, timeout, node, args...)
	if code != 0 {
		t.Fatalf("%s: %s: exit %d\n%s", node, strings.Join(args, " "), code, out)
	}
	return out
}

// buildSingleton builds test/e2e/singleton (a static HTTP server that
// answers its node's name) and returns the binary's path.
func buildSingleton(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "singleton")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./test/e2e/singleton")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build test/e2e/singleton: %v\n%s", err, out)
	}
	return bin
}
