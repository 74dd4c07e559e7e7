package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/client/dlm"
)

// exitNotAcquired is the status of `ssi lock` when the lock was not
// granted (as flock(1) -n).
const exitNotAcquired = 1

// exitLockLost is the status of `ssi lock` when the lock was lost while
// CMD ran (the node was fenced); CMD was sent SIGTERM.
const exitLockLost = 3

// killAfter is how long CMD has to exit after SIGTERM once the lock is lost.
const killAfter = 10 * time.Second

// TokenEnv is the environment variable in which `ssi lock` gives CMD the
// fencing token of its lock in PW or EX.
const TokenEnv = "OPENSSI_LOCK_TOKEN"

// cmdExit carries the exit status of the command ssi lock ran.
type cmdExit struct{ code int }

func (e cmdExit) Error() string { return fmt.Sprintf("command exited with status %d", e.code) }

func newLock(g *globals) *cobra.Command {
	var modeName string
	var nowait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "lock [-m MODE] [--nowait] [--timeout D] LOCKSPACE RESOURCE -- CMD [ARG...]",
		Short: "Run a command while holding a cluster-wide lock",
		Long: `Take a lock on RESOURCE in LOCKSPACE from the cluster's lock manager (dlmd),
run CMD as the invoking user while holding it, release it and exit with CMD's
status — like flock(1), but across every node of the cluster. The lock is
also released if ssi is killed. If the lock is lost while CMD runs (this node
was cut off from the cluster for longer than dlmd's lease, so another node may
now hold it), CMD is sent SIGTERM (SIGKILL 10s later) and ssi exits 3.
Exits 1 when the lock is not granted (--nowait or --timeout), 2 on a usage
error.

In mode PW or EX, CMD finds the lock's fencing token in OPENSSI_LOCK_TOKEN
(a decimal number; unset in weaker modes): it grows with every grant of PW
or EX on the resource, across the cluster and across a change of the node
that masters it. Pass it with every write to a storage system that keeps the
highest token it has seen and refuses lower ones: a CMD paused past dlmd's
lease, whose lock was given to another, is then refused.`,
		Args: cobra.MinimumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 2 {
				return usageError{errors.New("usage: ssi lock [-m MODE] LOCKSPACE RESOURCE -- CMD [ARG...]")}
			}
			m, err := dlm.ParseMode(modeName)
			if err != nil {
				return usageError{err}
			}
			var opts []dlm.Option
			if nowait {
				opts = append(opts, dlm.NoQueue())
			}
			if timeout > 0 {
				opts = append(opts, dlm.Timeout(timeout))
			}
			ctx := cmd.Context()
			c, err := dlm.New(ctx, dlm.WithSocket(g.socket("dlmd")))
			if err != nil {
				return err
			}
			defer c.Close()
			l, err := c.Lock(ctx, args[0], args[1], m, opts...)
			if err != nil {
				if errors.Is(err, dlm.ErrWouldBlock) || errors.Is(err, dlm.ErrTimeout) {
					fmt.Fprintln(g.errOut, "ssi: "+err.Error())
					return cmdExit{exitNotAcquired}
				}
				return err
			}
			run := exec.CommandContext(ctx, args[2], args[3:]...)
			run.Stdin, run.Stdout, run.Stderr = os.Stdin, g.out, g.errOut
			run.Env = lockEnv(os.Environ(), l.Token())
			rerr := runHolding(c, run, g)
			if errors.Is(rerr, dlm.ErrLost) || errors.Is(rerr, dlm.ErrClosed) {
				return cmdExit{exitLockLost} // runHolding said why
			}
			_ = l.Unlock(ctx)
			var ee *exec.ExitError
			switch {
			case rerr == nil:
				return nil
			case errors.As(rerr, &ee):
				code := ee.ExitCode()
				if code < 0 {
					code = 128 + 9
				}
				return cmdExit{code}
			}
			return fmt.Errorf("run %s: %w", args[2], rerr)
		},
	}
	cmd.Flags().StringVarP(&modeName, "mode", "m", "EX", "lock mode: NL, CR, CW, PR, PW or EX")
	cmd.Flags().BoolVarP(&nowait, "nowait", "n", false, "fail at once (exit 1) if the lock is held")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up (exit 1) after waiting this long")
	return cmd
}

// lockEnv is the environment of the command ssi lock runs: env with
// TokenEnv set to token, or without it when token is 0 (a mode below PW:
// a token inherited from an enclosing ssi lock would name another lock).
func lockEnv(env []string, token uint64) []string {
	env = slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, TokenEnv+"=") })
	if token != 0 {
		env = append(env, TokenEnv+"="+strconv.FormatUint(token, 10))
	}
	return env
}

// runHolding runs cmd while the session holds its lock. When the session
// ends first (its locks are gone), cmd is sent SIGTERM, then SIGKILL after
// killAfter, and the session's error is returned.
func runHolding(c *dlm.Client, cmd *exec.Cmd, g *globals) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		return err
	case <-c.Done():
	}
	err := c.Err()
	fmt.Fprintf(g.errOut, "ssi: %v: sending SIGTERM to %s\n", err, cmd.Path)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-waited:
	case <-time.After(killAfter):
		_ = cmd.Process.Kill()
		<-waited
	}
	return err
}
