package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/cmd/ssi/early"
	"github.com/openssi/openssi/internal/execwire"
	"github.com/openssi/openssi/internal/localapi"
)

// Exit statuses of `ssi exec` besides the command's own.
const (
	exitExecRefused   = vproc.ExitRefused       // 125
	exitNotExecutable = vproc.ExitNotExecutable // 126
	exitNotFound      = vproc.ExitNotFound      // 127
	exitNoNode        = 253
	exitNoVprocd      = 254
	exitLost          = vproc.ExitLost // 255
)

// forwarded are the signals ssi exec passes on to the program.
var forwarded = early.Forwarded

func newExec(g *globals) *cobra.Command {
	var (
		node   int
		tty    bool
		envs   []string
		dir    string
		detach bool
		auto   bool
		mig    bool
	)
	cmd := &cobra.Command{
		Use:   "exec [-n NODE | --auto] [-t] [-e K=V]... [-C DIR] [--detach | --migratable] -- CMD [ARG...]",
		Short: "Run a command on a node of the cluster",
		Long: `Run CMD on node NODE (default: this one) as if it ran here: as you (the
uid, gid and groups the kernel reports for ssi, never anything ssi says),
with your environment (plus -e K=V), in your current directory (or -C DIR;
where that directory does not exist on NODE, in your home there, with a
note on stderr), its stdin, stdout and stderr streamed, SIGINT, SIGTERM,
SIGHUP and SIGQUIT passed on to it. -t gives it a terminal on NODE, sized
and resized as yours (ssi exec -t -n 2 -- vi). If ssi goes away, CMD is
killed, unless --detach, which prints its cluster PID and lets it run on
with no stdio. --auto runs CMD on the least-loaded node (run queue per
CPU, as this node has heard), as ssi exec without -n does for the programs
of ssi loadlevel list. If this node goes DOWN, CMD runs on (with a SIGHUP
if ssi had a terminal here, as nohup decides). CMD is in your shell job's
cluster process group: ssi kill -- -CPGID reaches it on NODE.
--migratable starts CMD for cooperative migration (a checkpoint socket
in OPENSSI_CHECKPOINT_SOCK, docs/cooperative-migration.md): ssi migrate
CPID NODE can then move it while ssi exec reads on (not with -t or
--detach).

Exit status:
  the command's own, 128+N when signal N ended it
  125  NODE refused to run it (your user unknown there, too many programs
       of yours there, a request it cannot take)
  126  CMD exists on NODE but cannot be executed
  127  CMD is not found on NODE
  253  NODE is not a member of the cluster, or is DOWN (--auto: no load
       information yet)
  254  vprocd is not running on this node (or you may not use its socket)
  255  NODE or the connection to it was lost (CMD's fate is unknown), or
       NODE's vprocd cannot be reached
  2    a usage error of ssi itself`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 {
				return usageError{errors.New("usage: ssi exec [-n NODE | --auto] [-t] [-e K=V]... [-C DIR] [--detach | --migratable] -- CMD [ARG...]")}
			}
			if auto && node != 0 {
				return usageError{errors.New("-n and --auto: give one")}
			}
			if mig && (tty || detach) {
				return usageError{errors.New("--migratable with -t or --detach: a migratable program streams its stdio through ssi exec")}
			}
			if node < 0 {
				return usageError{fmt.Errorf("-n %d: want a node number", node)}
			}
			env, err := mergeEnv(os.Environ(), envs)
			if err != nil {
				return usageError{err}
			}
			c := vproc.Cmd{Args: args, Env: env, Dir: dir, TTY: tty, Detach: detach, Migratable: mig}
			if auto {
				node = vproc.Auto
			}
			if e := early.Take(); e != nil {
				// Sent before the rest of ssi was initialised; the
				// signals caught since are passed on.
				g.signals = e.Signals
				return g.exec(cmd.Context(), "exec", exitNoProcess, c, func(ctx context.Context, c vproc.Cmd) (*vproc.Process, error) {
					return resume(ctx, e, g.socket("vprocd"), c)
				})
			}
			return g.exec(cmd.Context(), "exec", exitNoProcess, c, func(ctx context.Context, c vproc.Cmd) (*vproc.Process, error) {
				cl, err := g.newExecClient(ctx)
				if err != nil {
					return nil, err
				}
				return cl.Exec(ctx, node, c)
			})
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.IntVarP(&node, "node", "n", 0, "the node to run on (0: this node)")
	f.BoolVarP(&tty, "tty", "t", false, "run CMD on a terminal on NODE")
	f.StringArrayVarP(&envs, "env", "e", nil, "set K to V in CMD's environment (repeatable)")
	f.StringVarP(&dir, "dir", "C", "", "run CMD in DIR on NODE (default: the current directory)")
	f.BoolVar(&detach, "detach", false, "print CMD's cluster PID and let it run on after ssi")
	f.BoolVar(&auto, "auto", false, "run CMD on the least-loaded node")
	f.BoolVar(&mig, "migratable", false, "start CMD for cooperative migration (ssi migrate)")
	return cmd
}

// mergeEnv returns base with each K=V of sets put in place of K's value,
// or added.
func mergeEnv(base, sets []string) ([]string, error) {
	env, bad, ok := execwire.MergeEnv(base, sets)
	if !ok {
		return nil, fmt.Errorf("-e %q: want K=V", bad)
	}
	return env, nil
}

// newExecClient connects to vprocd for an exec, which closes the
// connection when it ends. An error wraps vproc.ErrNotRunning (exit status
// 254).
func (g *globals) newExecClient(ctx context.Context) (*vproc.Client, error) {
	cl, err := g.vproc(ctx)
	if err != nil && !errors.Is(err, vproc.ErrNotRunning) {
		err = fmt.Errorf("%w: %w", vproc.ErrNotRunning, err)
	}
	g.execClient = cl
	return cl, err
}

// resume takes over the exec early started: its connection becomes the
// Process's.
func resume(ctx context.Context, e *early.Exec, socket string, c vproc.Cmd) (*vproc.Process, error) {
	conn, err := localapi.UnixConnOf(e.FD)
	if err != nil {
		return nil, fmt.Errorf("vproc: %w: the exec socket's connection: %w", vproc.ErrLost, err)
	}
	return vproc.Resume(ctx, vproc.SentExec{Conn: conn, Socket: socket, Passed: e.Passed,
		FirstKind: e.First.Kind, FirstMsg: e.First.Msg}, c)
}

// exec runs c with start (`ssi what`: exec, strace) and returns the
// program's status as a cmdExit; noProcess is the status when start finds
// no process of the cpid it was given.
func (g *globals) exec(ctx context.Context, what string, noProcess int, c vproc.Cmd, start func(context.Context, vproc.Cmd) (*vproc.Process, error)) error {
	// A forwarded signal must not end ssi's context: that would kill CMD.
	ctx = context.WithoutCancel(ctx)
	defer func() {
		// ssi exits once the program did: closing the connection is
		// left to that exit, not waited for (gRPC's Close took about
		// 0.3 ms).
		if cl := g.execClient; cl != nil {
			go cl.Close()
		}
	}()
	fail := func(code int, msg string) error {
		fmt.Fprintln(g.errOut, "ssi "+what+": "+oneLine(msg))
		return cmdExit{code}
	}
	var restore func()
	if c.TTY {
		if rows, cols, ok := termSize(); ok {
			c.Rows, c.Cols = rows, cols
		}
		restore = rawTerminal()
	}
	defer func() {
		if restore != nil {
			restore()
		}
	}()
	if !c.Detach {
		c.Stdout, c.Stderr = g.out, g.errOut
		if !c.TTY {
			// Stdio that is no terminal (a pipe, a file) goes to
			// vprocd, which reads and writes it itself.
			c.Stdin, c.PassFiles = g.in, true
		}
	}
	p, err := start(ctx, c)
	if err != nil {
		if restore != nil {
			restore()
			restore = nil
		}
		var se *vproc.StartError
		switch {
		case errors.As(err, &se):
			return fail(se.Status.Code, se.Status.Reason)
		case errors.Is(err, vproc.ErrNoNode):
			return fail(exitNoNode, err.Error())
		case errors.Is(err, vproc.ErrNotRunning):
			return fail(exitNoVprocd, err.Error())
		case errors.Is(err, vproc.ErrNoProcess):
			return fail(noProcess, err.Error())
		case errors.Is(err, vproc.ErrPermission):
			return fail(exitDenied, err.Error())
		case errors.Is(err, vproc.ErrRefused):
			return fail(exitExecRefused, err.Error())
		}
		return fail(exitLost, err.Error())
	}
	if c.Detach {
		fmt.Fprintln(g.out, p.Cpid)
		return nil
	}
	if p.Stdin != nil {
		go func() {
			_, _ = io.Copy(p.Stdin, g.in)
			_ = p.Stdin.Close()
		}()
	}
	sigs := g.signals
	if sigs == nil {
		sigs = make(chan os.Signal, 8)
	}
	signal.Notify(sigs, append(forwarded, syscall.SIGWINCH)...)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case s := <-sigs:
				if s == syscall.SIGWINCH {
					if rows, cols, ok := termSize(); ok && c.TTY {
						_ = p.Resize(rows, cols)
					}
					continue
				}
				_ = p.Signal(s.(syscall.Signal))
			}
		}
	}()
	st, err := p.Wait()
	if restore != nil {
		restore()
		restore = nil
	}
	if err != nil {
		return fail(exitLost, err.Error())
	}
	if st.Reason != "" {
		fmt.Fprintln(g.errOut, "ssi "+what+": "+oneLine(st.Reason))
	}
	if st.Code != 0 {
		return cmdExit{st.Code}
	}
	return nil
}

// termSize returns the size of the terminal on stdout (or stdin).
func termSize() (rows, cols uint16, ok bool) {
	for _, fd := range []int{1, 0} {
		if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil && ws.Row > 0 && ws.Col > 0 {
			return ws.Row, ws.Col, true
		}
	}
	return 0, 0, false
}

// rawTerminal puts the terminal on stdin in raw mode, as ssh -t does, so
// that keys (^C included) go to the remote terminal; it returns how to
// restore it (nil when stdin is no terminal).
func rawTerminal() func() {
	old, err := unix.IoctlGetTermios(0, unix.TCGETS)
	if err != nil {
		return nil
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(0, unix.TCSETS, &raw); err != nil {
		return nil
	}
	return func() { _ = unix.IoctlSetTermios(0, unix.TCSETS, old) }
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
