package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

// Exit statuses of `ssi kill` and `ssi renice` (the first failure's, when
// several processes are named).
const (
	exitNoProcess = 1
	exitDenied    = 3
	// exitNoNode (253), exitNoVprocd (254) and exitLost (255, here: the
	// node's vprocd cannot be reached) are ssi exec's.
)

const signalExitStatus = `Exit status:
  0    every process named was signaled
  1    no such process (or no process in the group)
  2    a usage error (a bad CPID, signal or nice value)
  3    permission denied: you may signal or renice only your own
       processes (root any), and lower a nice value only as root
  253  the node the process runs on is DOWN or not a member
  254  vprocd is not running on this node
  255  that node's vprocd cannot be reached`

func newKill(g *globals) *cobra.Command {
	var sigName string
	cmd := &cobra.Command{
		Use:   "kill [-s SIG] CPID... | kill [-s SIG] -- -CPGID...",
		Short: "Send a signal to processes anywhere in the cluster",
		Long: `Send SIG (default TERM; a name such as HUP or SIGHUP, or a number; 0
only checks) to each process CPID wherever it runs, or with -CPGID after
--, to every process of the cluster process group CPGID on every node:
the processes started by ssi exec from one shell job are in the group of
that job (CPGID is the cluster pid of the job's process group leader).
You may signal only your own processes; root any. Each failure is one
line on stderr.

` + signalExitStatus,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sig, err := parseSignal(sigName)
			if err != nil {
				return usageError{err}
			}
			targets := make([]cpid.Target, len(args))
			for i, a := range args {
				if targets[i], err = cpid.ParseTarget(a); err != nil {
					return usageError{err}
				}
			}
			return g.eachProcess(cmd.Context(), "kill", len(targets), func(ctx context.Context, cl *vproc.Client, i int) error {
				t := targets[i]
				if t.Group {
					_, err := cl.KillGroup(ctx, int64(t.ID), sig)
					return err
				}
				return cl.Kill(ctx, int64(t.ID), sig)
			})
		},
	}
	cmd.Flags().StringVarP(&sigName, "signal", "s", "TERM", "the signal to send (name or number)")
	return cmd
}

func newRenice(g *globals) *cobra.Command {
	var nice int
	cmd := &cobra.Command{
		Use:   "renice -n N CPID...",
		Short: "Set the nice value of processes anywhere in the cluster",
		Long: `Set the nice value of each process CPID, wherever it runs, to N
(-20..19), and print the old and the new value. You may renice only your
own processes, and only to a higher value (a lower priority); root any.

` + signalExitStatus,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("priority") {
				return usageError{errors.New("usage: ssi renice -n N CPID [CPID]...: -n is required")}
			}
			if nice < -20 || nice > 19 {
				return usageError{fmt.Errorf("-n %d: want a nice value in -20..19", nice)}
			}
			ids := make([]cpid.CPID, len(args))
			for i, a := range args {
				var err error
				if ids[i], err = cpid.Parse(a); err != nil {
					return usageError{err}
				}
			}
			return g.eachProcess(cmd.Context(), "renice", len(ids), func(ctx context.Context, cl *vproc.Client, i int) error {
				old, err := cl.Renice(ctx, int64(ids[i]), nice)
				if err == nil {
					fmt.Fprintf(g.out, "%s: old nice %d, new nice %d\n", ids[i], old, nice)
				}
				return err
			})
		},
	}
	cmd.Flags().IntVarP(&nice, "priority", "n", 0, "the nice value to set, -20..19")
	return cmd
}

// eachProcess runs f for each of n processes on one connection to vprocd,
// printing each failure as one line; the status is the first failure's.
func (g *globals) eachProcess(ctx context.Context, what string, n int, f func(context.Context, *vproc.Client, int) error) error {
	cl, err := vproc.New(ctx, vproc.WithSocket(g.socket("vprocd")))
	if err != nil {
		fmt.Fprintln(g.errOut, "ssi "+what+": "+oneLine(err.Error()))
		return cmdExit{exitNoVprocd}
	}
	defer cl.Close()
	code := 0
	for i := 0; i < n; i++ {
		err := f(ctx, cl, i)
		if err == nil {
			continue
		}
		fmt.Fprintln(g.errOut, "ssi "+what+": "+oneLine(err.Error()))
		if code == 0 {
			code = signalExit(err)
			var me migrateError
			if errors.As(err, &me) {
				code = migrateExit(me.error)
			}
		}
	}
	if code != 0 {
		return cmdExit{code}
	}
	return nil
}

// signalExit is the exit status of a failed kill or renice.
func signalExit(err error) int {
	switch {
	case errors.Is(err, vproc.ErrNoProcess):
		return exitNoProcess
	case errors.Is(err, vproc.ErrPermission):
		return exitDenied
	case errors.Is(err, vproc.ErrNoNode):
		return exitNoNode
	case errors.Is(err, vproc.ErrNotRunning):
		return exitNoVprocd
	case errors.Is(err, vproc.ErrRefused):
		return exitUsage
	}
	return exitLost
}

// parseSignal reads a signal as kill(1) does: a name with or without SIG,
// in any case, or a number 0..64.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 64 {
			return 0, fmt.Errorf("-s %s: want a signal number 0..64", s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("-s %s: unknown signal", s)
}
