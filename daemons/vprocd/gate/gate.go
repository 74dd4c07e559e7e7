// Package gate holds a program back until vprocd lets it run: a gated
// program starts as vprocd's own binary (/proc/self/exe) under the name
// Name, already with the caller's credentials, directory and environment,
// and blocks on a pipe (descriptor FD) until vprocd writes a byte to it;
// then it closes the pipe and executes the program in its place. vprocd
// moves it into its scope meanwhile, so nothing the program forks is left
// behind in vprocd's cgroup. It grants nothing: it runs as its caller, the
// program its caller named.
//
// The gate runs in this package's init, in any binary that links it
// (vprocd through package runner, runner's tests). A program's packages
// are initialised in the order of their import paths once their own
// imports are (the Go spec, since Go 1.21): this package imports syscall
// alone (and procself, which does too), so its init runs before nearly
// every other package's (gRPC's, Consul's, logrus's, ...), whose inits cost
// a gated exec about 3 ms when the gate was an init of package runner. So
// it must import nothing else: not os (procself reads its arguments from
// /proc/self/cmdline), not fmt.
package gate

import (
	"syscall"

	"github.com/openssi/openssi/internal/procself"
)

// Name is argv[0] of a gated program.
const Name = "openssi-vproc-gate"

// FD is the gate pipe's descriptor in the gated process.
const FD = 3

// The statuses of a gate whose program does not start, a shell's (package
// runner's ExitRefused, ExitNotFound, ExitNotExecutable).
const (
	exitRefused       = 125
	exitNotFound      = 127
	exitNotExecutable = 126
)

func init() {
	args := procself.Cmdline()
	switch {
	case len(args) >= 3 && args[0] == Name:
		syscall.Exit(run(args[1], args[2:]))
	case len(args) == 1 && args[0] == Name:
		syscall.Exit(warm())
	}
}

// run waits for the byte that opens the gate, then executes path with
// argv; it returns only when that fails, with the status a shell gives.
func run(path string, argv []string) int {
	var b [1]byte
	n, err := syscall.Read(FD, b[:])
	for err == syscall.EINTR {
		n, err = syscall.Read(FD, b[:])
	}
	_ = syscall.Close(FD)
	if n != 1 {
		return exitRefused // vprocd gave up on it
	}
	err = syscall.Exec(path, argv, syscall.Environ())
	msg := argv[0] + ": " + Reason(err) + "\n"
	_, _ = syscall.Write(2, []byte(msg))
	if err == syscall.ENOENT {
		return exitNotFound
	}
	return exitNotExecutable
}

// Reason is the text of err as a shell shows it: an errno's with a
// capital first letter ("No such file or directory").
func Reason(err error) string {
	s := err.Error()
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		s = string(s[0]-'a'+'A') + s[1:]
	}
	return s
}
