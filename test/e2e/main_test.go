//go:build e2e

// Package e2e runs multi-node tests on the lab (package lab): real Debian
// nodes under systemd-nspawn with systemd, Consul and the openssi package
// installed with apt-get from a repository built from this working tree.
// They need root, debootstrap and systemd-container (.ci/run installs them).
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/lab"
)

var (
	dist   string // the packages and repository the lab installs from
	root   string // the repository root
	consul string
	criu   string // CRIU_BIN: the CRIU labs made for it install (make criu)
	tmp    string // the run's scratch directory
)

// The shared 5-node lab of the package, brought up by the first test that
// needs it (fiveLab), so that a run of only the tests with a lab of their
// own (-run TestVproc) does not boot it.
var (
	fiveOnce sync.Once
	fiveUp   *lab.Lab // set once its Up was tried: torn down at the end
	fiveErr  error
)

// fiveLab returns the shared 5-node lab, bringing it up on the first call.
func fiveLab(t *testing.T) *lab.Lab {
	t.Helper()
	fiveOnce.Do(func() {
		l, err := openLab(filepath.Join(tmp, "five"), "e2e5", "10.77.5")
		if err != nil {
			fiveErr = err
			return
		}
		fiveUp = l
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := l.Up(ctx, 5); err != nil {
			fiveErr = fmt.Errorf("bring up 5 nodes: %w", err)
		}
	})
	if fiveErr != nil {
		t.Fatal(fiveErr)
	}
	return fiveUp
}

// releaseFive tears the shared 5-node lab down, if it is up, before a test
// that brings up a lab of its own: eight booted nodes on a 2-core machine
// starve each other's Consul into false failures. A later fiveLab brings it
// up again.
func releaseFive(t *testing.T) {
	t.Helper()
	if fiveUp != nil {
		if err := fiveUp.Down(context.Background()); err != nil {
			t.Fatalf("tear the 5-node lab down: %v", err)
		}
	}
	fiveOnce, fiveUp, fiveErr = sync.Once{}, nil, nil
}

// ownLab brings up a lab of n nodes for one test alone (the idle 5-node
// lab torn down first), torn down when the test ends; on failure it prints
// the nodes' journals and the last logLines lines of unit.
func ownLab(t *testing.T, prefix, subnet string, n int, unit string, logLines int) *lab.Lab {
	t.Helper()
	return ownLabWith(t, prefix, subnet, n, unit, logLines, "")
}

// ownLabWith is ownLab with the lab's CRIU (lab.Options.CRIU): "" for
// none.
func ownLabWith(t *testing.T, prefix, subnet string, n int, unit string, logLines int, criuBin string) *lab.Lab {
	t.Helper()
	releaseFive(t)
	l, err := openLabWith(t.TempDir(), prefix, subnet, criuBin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Down(context.Background()) })
	attachLogs(t, l)
	attachUnitLogs(t, l, unit, logLines)
	start := time.Now()
	if err := l.Up(ctxFor(t, 5*time.Minute), n); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d nodes UP in %s", n, time.Since(start).Round(100*time.Millisecond))
	checkAllUp(t, l, n)
	return l
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	root = filepath.Join(filepath.Dir(file), "..", "..")
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "e2e: "+format+"\n", args...)
		return 1
	}
	if os.Geteuid() != 0 {
		return fail("the e2e tests need root (network namespaces, a bridge, containers)")
	}
	var err error
	if consul, err = consulagent.Binary(); err != nil {
		return fail("%v", err)
	}
	criu = os.Getenv("CRIU_BIN")
	tmp, err = os.MkdirTemp("", "openssi-e2e-")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(tmp)
	dist = filepath.Join(tmp, "dist")
	if err := buildRepo(dist, ""); err != nil {
		return fail("%v", err)
	}
	defer func() {
		if fiveUp != nil {
			_ = fiveUp.Down(context.Background())
		}
	}()
	return m.Run()
}

func openLab(dir, prefix, subnet string) (*lab.Lab, error) {
	return openLabWith(dir, prefix, subnet, "")
}

func openLabWith(dir, prefix, subnet, criuBin string) (*lab.Lab, error) {
	l, err := lab.Open(lab.Options{Dir: dir, Prefix: prefix, Subnet: subnet, Dist: dist, Consul: consul, CRIU: criuBin, Log: os.Stderr})
	if err != nil {
		return nil, err
	}
	// A previous run that crashed may have left a lab of this name behind.
	if err := l.Down(context.Background()); err != nil {
		return nil, err
	}
	return l, nil
}

// buildRepo builds the packages (at version when not empty) and the signed
// repository into out.
func buildRepo(out, version string) error {
	args := []string{"run", "./packaging/cmd/openssi-pkg", "build", "--out", out}
	if version != "" {
		args = append(args, "--version", version)
	}
	for _, a := range [][]string{args, {"run", "./packaging/cmd/openssi-pkg", "repo", "--dist", out, "--out", filepath.Join(out, "repo")}} {
		cmd := exec.Command("go", a...)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(a, " "), err, b)
		}
	}
	return nil
}

// attachLogs prints the nodes' journals when the test failed.
func attachLogs(t *testing.T, l *lab.Lab) { attachUnitLogs(t, l, "", 40) }
