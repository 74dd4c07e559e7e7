package runner

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/openssi/openssi/daemons/vprocd/gate"
	"github.com/openssi/openssi/internal/fsident"
)

// Cred is who the program runs as.
type Cred = fsident.Cred

// Spec says what to run and how.
type Spec struct {
	// Argv is the command and its arguments; Argv[0] is looked up in
	// the PATH of Env when it has no slash.
	Argv []string
	// Env is the program's whole environment ("KEY=VALUE" each).
	Env []string
	// Dir is the directory to run in; when it is not a directory here,
	// the user's home (Proc.Note says so).
	Dir string
	// Cred is the caller's identity: the program runs with exactly it.
	Cred Cred
	// TTY runs the program on a new pseudo-terminal of Rows x Cols.
	TTY        bool
	Rows, Cols uint16
	// Detach gives the program /dev/null as stdio and a session of its
	// own: it outlives the caller.
	Detach bool
	// Gated holds the program back until Proc.Open, so that it can be
	// moved into a cgroup before it runs (see package gate).
	Gated bool
	// Stdio, where set, are the program's stdin, stdout and stderr in
	// place of pipes (not with TTY or Detach): Proc's Stdin, Stdout or
	// Stderr is then nil. Their file descriptions are made blocking, as
	// a program expects: they must be the caller's own, shared with no
	// one else. The caller keeps its copies, and may close them once
	// Start returned.
	Stdio [3]*os.File
	// NotePrefix starts the note's line that Start writes to Stdio[2]
	// (then Proc.Note is ""), before the program runs, as the first
	// line of its stderr.
	NotePrefix string

	// prepared: the note is written and the given files made blocking
	// (start is starting over after a dead gate).
	prepared bool
}

// defaultPath is the PATH used when the environment has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Proc is a started program.
type Proc struct {
	// Pid is its process id, also its process group's.
	Pid int
	// Note is one line for the caller's stderr ("" for none): the
	// directory it runs in is not the one asked for.
	Note string
	// InScope says it was started by a warm gate (Warm), already in a
	// scope of its own, and runs: Open does nothing.
	InScope bool
	// Stdin is its standard input (nil when detached).
	Stdin io.Writer
	// Stdout is its standard output, the terminal with TTY (nil when
	// detached); Stderr its standard error (nil with TTY or detached).
	Stdout, Stderr io.Reader

	cmd    *exec.Cmd
	tty    bool
	master *os.File   // the terminal's master side, with TTY
	stdin  *os.File   // the write end of its stdin pipe, without TTY
	outs   []*os.File // the read ends we hold
	gate   *os.File   // the write end of the gate pipe, until Open

	mu     sync.Mutex
	exited bool // the leader has exited (not yet reaped): no more signals
	// onExit, when set, is called once the program has exited (Wait).
	onExit func()
	// wait, when set, waits for a program this package did not start
	// (Adopt).
	wait func() Status
}

// Start starts the program of s. A program that cannot be started is a
// *StartError.
func Start(s Spec) (*Proc, error) { return start(s, nil) }

// start is Start through an idle warm gate that gates gives once the
// program is found (s is then gated by the gate, not by a gate pipe); a
// gate taken is either used or ended, never dropped. Without gates, or
// when it has none left, the program starts as a new process.
func start(s Spec, gates func() *warmGate) (*Proc, error) {
	if len(s.Argv) == 0 || s.Argv[0] == "" {
		return nil, &StartError{Code: ExitNotFound, Msg: "no command given"}
	}
	u, err := user.LookupId(strconv.FormatUint(uint64(s.Cred.UID), 10))
	if err != nil {
		return nil, &StartError{Code: ExitRefused, Msg: fmt.Sprintf("uid %d is not a user on this node", s.Cred.UID)}
	}
	cred, err := credential(s.Cred)
	if err != nil {
		return nil, err
	}
	p := &Proc{tty: s.TTY && !s.Detach}
	// The directory and the program are looked up as the caller, never
	// as root: what does not exist and what the caller may not see look
	// alike, so a caller learns nothing of directories it cannot read.
	var (
		dir, path string
		serr      *StartError
	)
	if err := fsident.Do(s.Cred, func() {
		dir, p.Note = chooseDir(s.Dir, u.HomeDir)
		path, serr = lookPath(s.Argv[0], dir, s.Env)
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	// Once, not again when a dead gate makes it start over: the note
	// would come twice, and a write to a file made blocking could block
	// for ever.
	if p.Note != "" && s.Stdio[2] != nil && !s.TTY && !s.Detach {
		if !s.prepared {
			writeNote(s.Stdio[2], s.NotePrefix+p.Note+"\n")
		}
		p.Note = ""
	}
	for _, f := range s.Stdio {
		if f != nil && !s.prepared {
			if err := setBlocking(f); err != nil {
				return nil, fmt.Errorf("runner: a stdio file given: %w", err)
			}
		}
	}
	cmd := &exec.Cmd{Path: path, Args: s.Argv, Env: s.Env, Dir: dir}
	var g *warmGate
	if gates != nil {
		g = gates()
	}
	var gateR *os.File
	if s.Gated && g == nil {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("runner: gate pipe: %w", err)
		}
		gateR, p.gate = r, w
		cmd.Path = "/proc/self/exe"
		cmd.Args = append([]string{gate.Name, path}, s.Argv...)
		cmd.ExtraFiles = []*os.File{r} // descriptor 3 (gate.FD)
	}
	attr := &syscall.SysProcAttr{Credential: cred}
	if err := p.wire(cmd, attr, s); err != nil {
		if gateR != nil {
			gateR.Close()
		}
		if g != nil {
			g.end()
		}
		p.closeAll()
		return nil, err
	}
	if g != nil {
		err := p.launch(g, cmd, attr)
		p.closeChildEnds(cmd, s.Stdio)
		if err != nil {
			p.closeAll()
			if errors.Is(err, errGateGone) {
				// That gate died idle: the next, or a new process.
				s.prepared = true
				return start(s, gates)
			}
			return nil, err
		}
		return p, nil
	}
	cmd.SysProcAttr = attr
	err = cmd.Start()
	p.closeChildEnds(cmd, s.Stdio)
	if gateR != nil {
		gateR.Close()
	}
	if err != nil {
		p.closeAll()
		return nil, &StartError{Code: ExitNotExecutable, Msg: fmt.Sprintf("%s: %s", s.Argv[0], startReason(err))}
	}
	p.cmd, p.Pid = cmd, cmd.Process.Pid
	return p, nil
}

// credential returns the SysProcAttr credential of c: nil when this
// process already is c and may not change ids (a vprocd not run as root,
// in tests); an error when it is not c and may not become it.
func credential(c Cred) (*syscall.Credential, error) {
	if os.Geteuid() == 0 {
		return &syscall.Credential{Uid: c.UID, Gid: c.GID, Groups: append([]uint32{}, c.Groups...)}, nil
	}
	if uint32(os.Geteuid()) == c.UID && uint32(os.Getegid()) == c.GID {
		return nil, nil
	}
	return nil, &StartError{Code: ExitRefused, Msg: fmt.Sprintf("vprocd runs as uid %d, not root: it cannot run programs as uid %d", os.Geteuid(), c.UID)}
}

// wire sets the program's stdio and process group.
func (p *Proc) wire(cmd *exec.Cmd, attr *syscall.SysProcAttr, s Spec) error {
	switch {
	case s.Detach:
		// stdio stays nil: /dev/null. A session of its own: no
		// terminal, no signal meant for vprocd's group.
		attr.Setsid = true
	case p.tty:
		master, slave, err := pty.Open()
		if err != nil {
			return fmt.Errorf("runner: open a pseudo-terminal: %w", err)
		}
		p.master = master
		if os.Geteuid() == 0 {
			// The terminal belongs to its user, as login(1) does it.
			if err := os.Chown(slave.Name(), int(s.Cred.UID), -1); err != nil {
				slave.Close()
				return fmt.Errorf("runner: give the terminal to uid %d: %w", s.Cred.UID, err)
			}
		}
		if err := p.Resize(s.Rows, s.Cols); err != nil {
			slave.Close()
			return err
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		attr.Setsid, attr.Setctty, attr.Ctty = true, true, 0
		p.Stdin, p.Stdout = master, master
	default:
		if s.Stdio[0] != nil {
			cmd.Stdin = s.Stdio[0]
		} else {
			inR, inW, err := os.Pipe()
			if err != nil {
				return fmt.Errorf("runner: stdin pipe: %w", err)
			}
			p.stdin = inW
			cmd.Stdin = inR
			growPipe(inW)
			p.Stdin = inW
		}
		p.outs = make([]*os.File, 2)
		for i, dst := range []*io.Writer{&cmd.Stdout, &cmd.Stderr} {
			if f := s.Stdio[1+i]; f != nil {
				*dst = f
				continue
			}
			r, w, err := os.Pipe()
			if err != nil {
				if f, ok := cmd.Stdin.(*os.File); ok && f != s.Stdio[0] {
					f.Close()
				}
				if w, ok := cmd.Stdout.(*os.File); ok && i == 1 && w != s.Stdio[1] {
					w.Close()
				}
				return fmt.Errorf("runner: output pipe: %w", err)
			}
			growPipe(r)
			p.outs[i] = r
			*dst = w
		}
		// Each a reader only when it is a pipe (a nil *os.File in an
		// io.Reader would be a reader).
		if p.outs[0] != nil {
			p.Stdout = p.outs[0]
		}
		if p.outs[1] != nil {
			p.Stderr = p.outs[1]
		}
		attr.Setpgid = true
	}
	return nil
}

// setBlocking clears O_NONBLOCK of f's file description, as a program
// expects of its stdio (os/exec leaves it).
func setBlocking(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetNonblock(int(fd), false) }); err != nil {
		return err
	}
	return serr
}

// noteWait bounds the write of the note to a given stderr (a pipe whose
// reader does not read).
const noteWait = time.Second

// writeNote writes the note's line to f, waiting noteWait at most; a
// note that cannot be written is dropped.
func writeNote(f *os.File, line string) {
	if f.SetWriteDeadline(time.Now().Add(noteWait)) == nil {
		defer func() { _ = f.SetWriteDeadline(time.Time{}) }()
	}
	_, _ = f.WriteString(line)
}

// PipeSize is the buffer asked of the kernel for a program's stdio pipes
// (F_SETPIPE_SZ; the default is 64 KiB, and one read never returns more
// than a pipe holds), so that one read of a fast writer's output fills a
// stdio message (package stdioflow).
const PipeSize = 1 << 20

// growPipe asks the kernel for a pipe buffer of PipeSize. A pipe it keeps
// smaller (a user's pipe quota, pipe-max-size) works the same, in smaller
// pieces.
func growPipe(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, PipeSize)
	})
}

// closeChildEnds closes this process's copies of the child's ends, but
// for the files the caller gave (given).
func (p *Proc) closeChildEnds(cmd *exec.Cmd, given [3]*os.File) {
	seen := map[*os.File]bool{}
	for _, f := range given {
		seen[f] = f != nil
	}
	for _, f := range []any{cmd.Stdin, cmd.Stdout, cmd.Stderr} {
		if f, ok := f.(*os.File); ok && !seen[f] {
			seen[f] = true
			f.Close()
		}
	}
}

// closeAll closes what Proc holds.
func (p *Proc) closeAll() {
	if p.gate != nil {
		p.gate.Close()
	}
	if p.master != nil {
		p.master.Close()
	}
	if p.stdin != nil {
		p.stdin.Close()
	}
	p.CloseOutput()
}

// CloseOutput closes the read ends of stdout and stderr (or the
// terminal): a reader blocked on them returns. For output a process that
// outlives the program keeps open.
func (p *Proc) CloseOutput() {
	for _, f := range p.outs {
		if f != nil {
			f.Close()
		}
	}
	if p.master != nil {
		p.master.Close()
	}
}

// CloseStdout closes the read end of the program's stdout pipe (no-op
// with TTY or detached): its next write there fails with EPIPE (SIGPIPE),
// as a write to a pipe whose reader went away. A reader of Stdout
// returns.
func (p *Proc) CloseStdout() { p.closeOut(0) }

// CloseStderr is CloseStdout for stderr.
func (p *Proc) CloseStderr() { p.closeOut(1) }

func (p *Proc) closeOut(i int) {
	if i < len(p.outs) && p.outs[i] != nil {
		p.outs[i].Close()
	}
}

// CloseStdin ends the program's input: closes the pipe, or on a terminal
// types the end-of-file character (^D).
func (p *Proc) CloseStdin() error {
	if p.master != nil {
		_, err := p.master.Write([]byte{4})
		return err
	}
	if p.stdin != nil {
		return p.stdin.Close()
	}
	return nil
}

// Resize sets the terminal's window size (no-op without TTY or for a
// zero size).
func (p *Proc) Resize(rows, cols uint16) error {
	if p.master == nil || rows == 0 || cols == 0 {
		return nil
	}
	return p.control(func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
}

// control runs f on the master's descriptor without making it blocking
// (File.Fd would, and Close could no longer end a read).
func (p *Proc) control(f func(fd int) error) error {
	rc, err := p.master.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// Signal sends sig to the program's process group, or on a terminal to
// its foreground process group. After the program has exited it does
// nothing: its group id may be another's.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return nil
	}
	pgrp := p.Pid
	if p.master != nil {
		_ = p.control(func(fd int) error {
			if g, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP); err == nil && g > 0 {
				pgrp = g
			}
			return nil
		})
	}
	return unix.Kill(-pgrp, sig)
}

// Kill sends SIGKILL to the program's process group (the session's
// leader's, with TTY).
func (p *Proc) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.exited {
		_ = unix.Kill(-p.Pid, unix.SIGKILL)
	}
}

// Wait waits for the program to exit and returns its status. The leader
// is left a zombie until no Signal or Kill can be under way, so that its
// group id is not reused under them.
func (p *Proc) Wait() Status {
	if p.wait != nil {
		return p.waitAdopted()
	}
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	p.mu.Lock()
	p.exited = true
	p.mu.Unlock()
	if p.gate != nil {
		p.gate.Close()
	}
	_ = p.cmd.Wait()
	if p.onExit != nil {
		p.onExit()
	}
	if p.stdin != nil {
		p.stdin.Close()
	}
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return Status{Code: 1}
	}
	return StatusOf(ws)
}

// chooseDir returns the directory to run in: dir when it is one, else
// home (or / when home is not one either), with a note for the caller's
// stderr when dir was asked for. Any failure to stat dir is the same
// answer (a directory the caller cannot reach is one that is not there),
// so it says nothing more than the caller could find out itself.
func chooseDir(dir, home string) (string, string) {
	if st, err := os.Stat(dir); dir != "" && err == nil && st.IsDir() {
		return dir, ""
	}
	if st, err := os.Stat(home); err != nil || !st.IsDir() {
		home = "/"
	}
	if dir == "" {
		return home, ""
	}
	return home, fmt.Sprintf("%s does not exist on this node: running in %s", dir, home)
}

// lookPath finds the program file of name as a shell would, in the PATH
// of env, relative to dir when name has a slash. What is not found is a
// *StartError with ExitNotFound; what is not a regular executable file
// one with ExitNotExecutable.
func lookPath(name, dir string, env []string) (string, *StartError) {
	if strings.Contains(name, "/") {
		path := name
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		return path, checkExecutable(name, path)
	}
	search := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			search = v
		}
	}
	var denied *StartError
	for _, d := range filepath.SplitList(search) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		path := filepath.Join(d, name)
		err := checkExecutable(name, path)
		if err == nil {
			return path, nil
		}
		// Like a shell, a file found but not executable is remembered;
		// a directory of PATH that cannot be searched is skipped.
		if _, serr := os.Stat(path); serr == nil && err.Code == ExitNotExecutable && denied == nil {
			denied = err
		}
	}
	if denied != nil {
		return "", denied
	}
	return "", &StartError{Code: ExitNotFound, Msg: name + ": command not found"}
}

// checkExecutable says whether path is a file execve(2) may run.
func checkExecutable(name, path string) *StartError {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return &StartError{Code: ExitNotFound, Msg: name + ": No such file or directory"}
	case err != nil:
		return &StartError{Code: ExitNotExecutable, Msg: name + ": " + startReason(err)}
	case st.IsDir():
		return &StartError{Code: ExitNotExecutable, Msg: name + ": Is a directory"}
	case !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0:
		return &StartError{Code: ExitNotExecutable, Msg: name + ": Permission denied"}
	}
	return nil
}

// startReason is the errno text of err, as a shell shows it.
func startReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	return err.Error()
}
