package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

// Exit statuses of `ssi migrate` besides kill's.
const (
	// exitNotMigratable: the process cannot move (not started with
	// ssi exec --migratable, not connected to its checkpoint socket, or
	// the node is where it runs or not UP).
	exitNotMigratable = 4
	// exitMoveFailed: the move was tried and failed; it runs on where it
	// was.
	exitMoveFailed = 5
)

func newMigrate(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate CPID NODE",
		Short: "Move a running process to another node",
		Long: `Move the process CPID, wherever it runs, to node NODE, keeping its
cluster PID and the stdio of the ssi exec that started it (which reads on,
one continuous stream). Only programs started with ssi exec --migratable
that speak the cooperative checkpoint protocol can move (a Go program
registers with client/vproc/coop; docs/cooperative-migration.md for
others). You may move only your own processes; root any. A move that fails
leaves the process running where it was, and says why in one line.

Exit status:
  0    it runs on NODE
  1    no such process
  2    a usage error (a bad CPID or NODE)
  3    permission denied: you may move only your own processes (root any)
  4    it cannot move: not started with ssi exec --migratable, not
       connected to its checkpoint socket, already on NODE, or NODE not UP
  5    the move failed: it runs on where it was (the line says why)
  254  vprocd is not running on this node
  255  the node it runs on cannot be reached`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError{errors.New("usage: ssi migrate CPID NODE")}
			}
			x, err := cpid.Parse(args[0])
			if err != nil {
				return usageError{err}
			}
			node, err := strconv.Atoi(args[1])
			if err != nil || node <= 0 || node > cpid.MaxNode {
				return usageError{fmt.Errorf("node %q: want a node number 1..%d", args[1], cpid.MaxNode)}
			}
			return g.eachProcess(cmd.Context(), "migrate", 1, func(ctx context.Context, cl *vproc.Client, _ int) error {
				if err := cl.Migrate(ctx, int64(x), node); err != nil {
					return migrateError{err}
				}
				fmt.Fprintf(g.out, "%s: now on node %d\n", x, node)
				return nil
			})
		},
	}
}

// migrateError marks a failed move for its exit status.
type migrateError struct{ error }

func (e migrateError) Unwrap() error { return e.error }

// migrateExit is the exit status of a failed move.
func migrateExit(err error) int {
	switch {
	case errors.Is(err, vproc.ErrNotMigratable):
		return exitNotMigratable
	case errors.Is(err, vproc.ErrMoveFailed):
		return exitMoveFailed
	}
	return signalExit(err)
}
