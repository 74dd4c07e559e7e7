package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/client/dlm"
)

// exitNotAcquired is the status of `ssi lock` when the lock was not
// granted (as flock(1) -n).
const exitNotAcquired = 1

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
also released if ssi is killed. Exits 1 when the lock is not granted
(--nowait or --timeout), 2 on a usage error.`,
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
			rerr := run.Run()
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
