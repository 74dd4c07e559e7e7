package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/client/initnode"
	"github.com/openssi/openssi/daemons/initfailover/initfailoverspec"
)

func newIsolate(g *globals) *cobra.Command {
	var o initnode.IsolateOptions
	cmd := &cobra.Command{
		Use:   "isolate TARGET [--dry-run] [--force]",
		Short: "Move every node to a systemd target, one node at a time (root)",
		Long: `Change the cluster's run level: move every UP node to the systemd target
TARGET (systemctl isolate TARGET there), one node at a time, keeping a
majority of the cluster's nodes UP. Root only.

TARGET must end in .target (maint is maint.target), exist on every node,
have AllowIsolate=yes, and pull in openssi.target and basic.target
(Wants= or Requires=, directly or through other units), as multi-user.target
does: an isolate stops every unit the target does not pull in, and without
them the node would stop its OpenSSI daemons, Consul or D-Bus and leave the
cluster. These checks run on every node before any node changes; a target
that fails one is refused with one line. --force skips the openssi.target
and basic.target rule (never AllowIsolate=yes): a node that then leaves the
cluster stops the change there.

The nodes move by number, then the init node, then this node: before the
init node moves, its role is handed to a node already at TARGET (as ssi
init move does), so the cluster's singleton services move once; this node
goes last so that nothing is left undone if its isolate stopped ssi (ssi
run from a login session survives it: session scopes are not stopped by
an isolate; run from a service TARGET does not pull in, it would be
stopped with that service). After each node's isolate job,
ssi waits until the node is UP in the membership again and has stayed UP
for 3s before the next. A node moves only if the other UP nodes are a
majority of the cluster's nodes, so that a majority stays UP even if it
drops out; otherwise ssi stops, or refuses to start, saying so. Nodes not UP
at the start are skipped and named at the end.

With --force, a node seen DOWN or gone from the membership after its
isolate job stops the change at once: the target took it out of the
cluster and it will not come back by itself.

--timeout (at most 1h) bounds each node's isolate job (initfailover on
that node waits that long for it), its return to UP and a hand-over of
the init role. A job still running then stops ssi with a line naming
the node: systemd goes on with it there (systemctl list-jobs).

One ssi isolate runs at a time in the cluster: a run holds a lock of
dlmd (openssi.initfailover/isolate) from its checks to its end, and
another, from any node, is refused naming the node the first runs
from. The lock is released when ssi ends, however it ends; a dry run
does not take it.

ssi prints a line per step. It exits 1 naming the node where it stopped,
or when a node was skipped.`,
		Example: "  ssi isolate maintenance.target --dry-run\n  ssi isolate maintenance.target\n  ssi isolate multi-user.target",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("%s takes one TARGET, got %d argument(s) (see `%s --help`)", cmd.CommandPath(), len(args), cmd.CommandPath())}
			}
			if o.Timeout <= 0 || o.Timeout > initfailoverspec.MaxIsolateTimeout {
				return usageError{fmt.Errorf("--timeout %s: want more than 0 and at most %s (see `%s --help`)", o.Timeout, initfailoverspec.MaxIsolateTimeout, cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			target := args[0]
			if !strings.Contains(target, ".") {
				target += ".target" // as systemctl isolate
			}
			ctx := cmd.Context()
			members, err := g.cluster(ctx)
			if err != nil {
				return err
			}
			defer members.Close()
			c, err := g.initnode(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			var lock initnode.RunLock
			if !o.DryRun {
				s, err := dlm.New(ctx, dlm.WithSocket(g.socket("dlmd")))
				if err != nil {
					return err
				}
				defer s.Close()
				lock = initnode.DLMRunLock(s)
			}
			o.Progress = func(p initnode.Progress) {
				fmt.Fprintf(g.out, "%s %s\n", time.Now().Format("15:04:05"), p)
			}
			if err := c.Isolate(ctx, target, members, lock, o); err != nil {
				return err
			}
			if o.DryRun {
				fmt.Fprintln(g.out, "dry run: the target passed its checks on every node; no node changed")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "check TARGET on every node and show the order; change nothing")
	cmd.Flags().BoolVar(&o.Force, "force", false, "allow a TARGET that does not pull in openssi.target and basic.target")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Minute, "longest wait for one node's isolate job, its return to UP, or a hand-over of the init role (at most 1h)")
	return cmd
}
