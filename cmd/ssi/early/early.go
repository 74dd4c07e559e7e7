// Package early runs the program of `ssi exec` from its package
// initialiser, before the rest of ssi is initialised: the request goes to
// vprocd's exec socket (package execwire) about half a millisecond into
// the process, and for the usual course (the program started) the whole
// exec runs there (run.go): its output, stdin, signals and exit status,
// and ssi's other packages are never initialised. Anything else (vprocd
// refused it, the program did not start) is taken over by ssi exec
// (Take) with vprocd's first answer, so its messages and statuses are
// ssi's own.
//
// Only a plain form starts early: `ssi exec [-n N] [-e K=V]... [-C DIR]
// -- CMD [ARG...]`, with vprocd's exec socket there. Any other (-t,
// --detach, --auto, --migratable, --help, a global flag, a value ssi
// would refuse) is left to ssi as it was.
//
// SIGINT, SIGTERM, SIGHUP and SIGQUIT are caught from the request's send
// on (nothing is read from vprocd before they are, long before the program
// can run), and passed on to the program: none ends ssi, and its program
// with it, before ssi could pass it on.
//
// A program's packages are initialised in the order of their import
// paths once their own imports are (the Go spec, since Go 1.21): this
// package imports os/signal (initialised early, with os) and otherwise
// syscall and two packages that import nothing but syscall, so that its
// initialiser runs before nearly every other package's.
package early

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/openssi/openssi/internal/execwire"
	"github.com/openssi/openssi/internal/procself"
)

// Exec is an exec whose request was sent.
type Exec struct {
	// FD is the connection to the exec socket; the caller owns it.
	FD int
	// Passed is the request's passed_stdio: which of descriptors 0, 1
	// and 2 went with it (bits 1, 2, 4).
	Passed uint32
	// Signals receives the signals ssi passes on (Forwarded), from
	// before the request was sent: the caller passes them on, those
	// that came meanwhile first, and calls signal.Stop with it.
	Signals chan os.Signal
	// First is vprocd's first answer, read already: its kind and message
	// (Kind 0: none read).
	First execwire.Frame
}

// Forwarded are the signals ssi exec passes on to its program.
var Forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

var started *Exec

func init() {
	args := procself.Cmdline()
	if len(args) < 2 || args[1] != "exec" {
		return
	}
	if started = start(args[2:]); started != nil {
		// Exits once the program did; returns to ssi for anything
		// else.
		started.run()
	}
}

// Take returns the exec started at initialisation, once; nil when there
// is none.
func Take() *Exec {
	e := started
	started = nil
	return e
}

// Parsed is a plain `ssi exec`'s command line.
type Parsed struct {
	Node uint32
	Sets []string // -e K=V, in order
	Dir  string   // -C DIR
	Args []string // CMD [ARG...]
}

// Parse parses the arguments after `ssi exec`; ok is false for anything
// but the plain form (see the package doc), which ssi's own parsing then
// handles. It takes what cobra takes the same way: -n N, -nN, --node N,
// --node=N (a decimal N), the same for -e/--env and -C/--dir, the last
// -n and -C winning, up to a "--" that must come before CMD.
func Parse(args []string) (p Parsed, ok bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			p.Args = args[i+1:]
			return p, len(p.Args) > 0 && p.Args[0] != ""
		}
		name, value, inline := flagOf(a)
		if name == "" {
			return p, false // CMD without "--", or a flag early leaves to ssi
		}
		if !inline {
			if i+1 >= len(args) {
				return p, false
			}
			i++
			value = args[i]
		}
		switch name {
		case "n":
			n, ok := decimal(value)
			if !ok {
				return p, false
			}
			p.Node = n
		case "e":
			p.Sets = append(p.Sets, value)
		case "C":
			p.Dir = value
		}
	}
	return p, false
}

// flagOf splits one of the flags early reads, by its short name: "-n"
// gives ("n", "", false), "-n2" ("n", "2", true), "-n=2" ("n", "2",
// true), "--node=2" ("n", "2", true), "--node" ("n", "", false); ""
// for anything else. As pflag reads them: "-C=" is the directory "=".
func flagOf(a string) (name, value string, inline bool) {
	switch {
	case len(a) > 2 && a[:2] == "--":
		long, value, inline := a[2:], "", false
		for i := 2; i < len(a); i++ {
			if a[i] == '=' {
				long, value, inline = a[2:i], a[i+1:], true
				break
			}
		}
		short := map[string]string{"node": "n", "env": "e", "dir": "C"}[long]
		return short, value, inline && short != ""
	case len(a) >= 2 && a[0] == '-' && (a[1] == 'n' || a[1] == 'e' || a[1] == 'C'):
		switch {
		case len(a) == 2:
			return a[1:], "", false
		case len(a) > 3 && a[2] == '=':
			return a[1:2], a[3:], true
		}
		return a[1:2], a[2:], true
	}
	return "", "", false
}

// decimal parses a node number as ssi would, from decimal digits alone
// without a leading 0 (ssi reads 010 as octal); ssi's own parsing takes
// the rest: octal, hex, signs, and refuses.
func decimal(s string) (uint32, bool) {
	if s == "" || len(s) > 9 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var n uint32
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + uint32(s[i]-'0')
	}
	return n, true
}

// start sends the exec of args to vprocd's exec socket; nil when it is
// not the plain form or was not sent.
func start(args []string) *Exec {
	p, ok := Parse(args)
	if !ok {
		return nil
	}
	env, _, ok := execwire.MergeEnv(syscall.Environ(), p.Sets)
	if !ok {
		return nil
	}
	dir := p.Dir
	if dir == "" {
		if dir, ok = getwd(); !ok {
			return nil
		}
	}
	runDir, _ := syscall.Getenv("OPENSSI_CLUSTER_RUN_DIR")
	if runDir == "" {
		runDir = "/run/openssi"
	}
	var passed uint32
	var fds []int
	for fd := 0; fd <= 2; fd++ {
		if execwire.Passable(fd, fd > 0) {
			passed |= 1 << fd
			fds = append(fds, fd)
		}
	}
	// A signal from here on is kept for the program, not the end of
	// ssi (and of the program with it). Notify's first call starts the
	// runtime's signal thread (0.4 ms here): done meanwhile, and
	// waited for before the initialiser returns, long before the
	// program can run.
	sigs := make(chan os.Signal, 8)
	notified := make(chan struct{})
	go func() {
		signal.Notify(sigs, Forwarded...)
		close(notified)
	}()
	sent := false
	defer func() {
		<-notified
		if !sent {
			signal.Stop(sigs)
			for len(sigs) > 0 {
				// Taken before ssi could: its own handling now.
				_ = syscall.Kill(syscall.Getpid(), (<-sigs).(syscall.Signal))
			}
		}
	}()
	s, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	if err := connect(s, execwire.SocketPath(runDir+"/vprocd.sock")); err != nil {
		syscall.Close(s)
		return nil
	}
	frame := execwire.AppendStartFrame(nil, execwire.Start{Node: p.Node, Argv: p.Args, Env: env, Cwd: dir, PassedStdio: passed})
	if len(frame) > execwire.HeaderSize+execwire.MaxMessage {
		syscall.Close(s)
		return nil // ssi says it is too long
	}
	var rights []byte
	if len(fds) > 0 {
		rights = syscall.UnixRights(fds...)
	}
	for len(frame) > 0 {
		// MSG_NOSIGNAL: a vprocd gone is an error here, not SIGPIPE.
		n, err := syscall.SendmsgN(s, frame, rights, nil, syscall.MSG_NOSIGNAL)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			// Half a request starts nothing: ssi starts it again.
			syscall.Close(s)
			return nil
		}
		frame, rights = frame[n:], nil
	}
	sent = true
	return &Exec{FD: s, Passed: passed, Signals: sigs}
}

func connect(s int, path string) error {
	for {
		err := syscall.Connect(s, &syscall.SockaddrUnix{Name: path})
		if err != syscall.EINTR {
			return err
		}
	}
}

// getwd returns the current directory as os.Getwd does: $PWD when it
// names it (the path the user sees, through symbolic links), else the
// kernel's.
func getwd() (string, bool) {
	if pwd, _ := syscall.Getenv("PWD"); len(pwd) > 0 && pwd[0] == '/' {
		var dot, p syscall.Stat_t
		if syscall.Stat(".", &dot) == nil && syscall.Stat(pwd, &p) == nil && dot.Dev == p.Dev && dot.Ino == p.Ino {
			return pwd, true
		}
	}
	wd, err := syscall.Getwd()
	return wd, err == nil
}
