package criu

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// BinEnv names the environment variable that gives the CRIU binary to
// tests (and to vprocd when its settings name none).
const BinEnv = "CRIU_BIN"

// Runner runs programs for Detect. [Exec] is the real one; tests give a
// fake.
type Runner interface {
	// LookPath finds a program on PATH, as exec.LookPath.
	LookPath(file string) (string, error)
	// Run runs bin with args and returns its stdout and stderr together
	// and its exit status; err is for a program that could not be run or
	// was stopped by ctx, not for a non-zero status.
	Run(ctx context.Context, bin string, args ...string) (out []byte, status int, err error)
}

// Status is CRIU's state on a node.
type Status int

// The states, in the order Detect checks them.
const (
	// Missing: no CRIU binary.
	Missing Status = iota
	// Broken: the binary did not run or did not say its version.
	Broken
	// TooOld: older than MinVersion.
	TooOld
	// CheckFailed: `criu check` does not pass on this kernel.
	CheckFailed
	// Ready: migration can use it.
	Ready
)

func (s Status) String() string {
	switch s {
	case Missing:
		return "missing"
	case Broken:
		return "broken"
	case TooOld:
		return "too-old"
	case CheckFailed:
		return "check-failed"
	case Ready:
		return "ready"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// State is what Detect found.
type State struct {
	Status Status
	// Bin is the binary's path ("" when Missing).
	Bin string
	// Version is its version (zero when Missing or Broken).
	Version Version
	// Reason says why it is not Ready ("" when Ready).
	Reason string
}

// String is one line for `ssi status`: "ready: criu 4.2.1 at /usr/sbin/criu"
// or "too-old: criu 3.17.1 at /usr/sbin/criu: ...".
func (s State) String() string {
	switch s.Status {
	case Missing:
		return fmt.Sprintf("%v: %s", s.Status, s.Reason)
	case Broken:
		return fmt.Sprintf("%v: %s: %s", s.Status, s.Bin, s.Reason)
	case Ready:
		return fmt.Sprintf("%v: criu %v at %s", s.Status, s.Version, s.Bin)
	}
	return fmt.Sprintf("%v: criu %v at %s: %s", s.Status, s.Version, s.Bin, s.Reason)
}

// Detect finds CRIU and says whether migration can use it: bin when not ""
// (a setting or CRIU_BIN), else "criu" on PATH; its `--version` must be at
// least MinVersion and `criu check` must pass. It needs root for the check
// (CRIU needs CAP_SYS_ADMIN and more); ctx bounds the two runs.
func Detect(ctx context.Context, r Runner, bin string) State {
	if bin == "" {
		p, err := r.LookPath("criu")
		if err != nil {
			return State{Status: Missing, Reason: "no criu on PATH (make criu builds the pinned CRIU; " + BinEnv + " names one)"}
		}
		bin = p
	} else if !strings.Contains(bin, "/") {
		// A name alone: the binary on PATH, by its path, which is what
		// vprocd's restore holder executes.
		p, err := r.LookPath(bin)
		if err != nil {
			return State{Status: Missing, Bin: bin, Reason: "no " + bin + " on PATH"}
		}
		bin = p
	}
	out, status, err := r.Run(ctx, bin, "--version")
	if err != nil {
		return State{Status: Broken, Bin: bin, Reason: err.Error()}
	}
	if status != 0 {
		return State{Status: Broken, Bin: bin, Reason: fmt.Sprintf("criu: --version exited with status %d: %s", status, clip(out))}
	}
	v, err := ParseVersion(out)
	if err != nil {
		return State{Status: Broken, Bin: bin, Reason: err.Error()}
	}
	st := State{Bin: bin, Version: v}
	if v.Less(MinVersion) {
		st.Status, st.Reason = TooOld, fmt.Sprintf("criu: version %v is older than %v", v, MinVersion)
		return st
	}
	out, status, err = r.Run(ctx, bin, "check")
	if err == nil {
		err = ParseCheck(out, status)
	}
	if err != nil {
		st.Status, st.Reason = CheckFailed, err.Error()
		return st
	}
	st.Status = Ready
	return st
}

// Exec is the Runner of real processes.
type Exec struct{}

// LookPath is exec.LookPath.
func (Exec) LookPath(file string) (string, error) { return exec.LookPath(file) }

// Run runs bin and returns its combined output and exit status.
func (Exec) Run(ctx context.Context, bin string, args ...string) ([]byte, int, error) {
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, 0, nil
	case ctx.Err() != nil:
		return out, -1, fmt.Errorf("criu: %s %v: %w", bin, args, ctx.Err())
	case errors.As(err, &ee) && ee.Exited():
		return out, ee.ExitCode(), nil
	}
	return out, -1, fmt.Errorf("criu: %s %v: %w", bin, args, err)
}
