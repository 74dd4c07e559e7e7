// Package roottest decides what a test does when it needs root and system
// tools (debootstrap, systemd-nspawn) it may not have: it is skipped, with a
// message saying how to run it, unless under CI (env CI=true), where it
// fails, so CI cannot skip these tests silently. `make unit` sets
// OPENSSI_NO_ROOT to skip them even when run as root.
package roottest

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// DisableEnv names the environment variable that, set to any value, skips
// the tests that need root even for root (and under CI): `make unit` sets it.
const DisableEnv = "OPENSSI_NO_ROOT"

// Need skips (or under CI fails) t unless it runs as root, OPENSSI_NO_ROOT is
// unset and every tool is on PATH.
func Need(t testing.TB, tools ...string) {
	t.Helper()
	msg, fail := missing(os.Geteuid(), os.Getenv(DisableEnv) != "", ci(), lookPath, tools)
	switch {
	case msg == "":
	case fail:
		t.Fatal(msg)
	default:
		t.Skip(msg)
	}
}

func ci() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

func lookPath(tool string) bool {
	_, err := exec.LookPath(tool)
	return err == nil
}

// missing says what a test lacks ("" for nothing) and whether that is a
// failure rather than a skip.
func missing(euid int, disabled, ci bool, have func(string) bool, tools []string) (msg string, fail bool) {
	if disabled {
		return fmt.Sprintf("needs root, skipped: %s is set (make unit)", DisableEnv), false
	}
	var lacks []string
	if euid != 0 {
		lacks = append(lacks, "root")
	}
	for _, tool := range tools {
		if !have(tool) {
			lacks = append(lacks, tool)
		}
	}
	if len(lacks) == 0 {
		return "", false
	}
	need := "root"
	if len(tools) > 0 {
		need += " and " + strings.Join(tools, ", ")
	}
	msg = fmt.Sprintf("needs %s; lacks %s: run `make test` as root, which installs the tools", need, strings.Join(lacks, ", "))
	if ci {
		return msg + " (CI=true makes this a failure, not a skip)", true
	}
	return msg + " (skipped; under CI=true this fails)", false
}

// NeedFUSE is Need for a test that mounts with FUSE: root, the tools,
// and /dev/fuse.
func NeedFUSE(t testing.TB, tools ...string) {
	t.Helper()
	Need(t, tools...)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if ci() {
			t.Fatalf("needs /dev/fuse: %v (CI=true makes this a failure, not a skip)", err)
		}
		t.Skipf("needs /dev/fuse: %v (skipped; under CI=true this fails)", err)
	}
}
