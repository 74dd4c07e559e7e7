package runner

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// A gated program starts as this same binary (/proc/self/exe) under the
// name gateName, already with the caller's credentials, directory and
// environment, and blocks on a pipe (descriptor 3) until Open: then it
// closes the pipe and executes the program in its place. vprocd moves it
// into its scope meanwhile, so nothing the program forks is left behind
// in vprocd's cgroup. init runs the gate in any binary that links this
// package (vprocd, its tests); it grants nothing: it runs as its caller,
// the program its caller named.
const gateName = "openssi-vproc-gate"

// gateFD is the gate pipe's descriptor in the gated process.
const gateFD = 3

func init() {
	if len(os.Args) >= 3 && os.Args[0] == gateName {
		os.Exit(gate(os.Args[1], os.Args[2:]))
	}
}

// gate waits for the byte that opens it, then executes path with argv;
// it returns only when that fails, with the status a shell gives.
func gate(path string, argv []string) int {
	var b [1]byte
	n, err := syscall.Read(gateFD, b[:])
	for errors.Is(err, syscall.EINTR) {
		n, err = syscall.Read(gateFD, b[:])
	}
	_ = syscall.Close(gateFD)
	if n != 1 {
		return ExitRefused // vprocd gave up on it
	}
	err = syscall.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "%s: %s\n", argv[0], startReason(err))
	if errors.Is(err, syscall.ENOENT) {
		return ExitNotFound
	}
	return ExitNotExecutable
}

// Open lets a gated program run (no-op otherwise).
func (p *Proc) Open() {
	if p.gate != nil {
		_, _ = p.gate.Write([]byte{1})
		p.gate.Close()
		p.gate = nil
	}
}
