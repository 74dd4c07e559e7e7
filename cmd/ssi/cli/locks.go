package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/internal/localapi"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

func newLocks(g *globals) *cobra.Command {
	var purge bool
	var pid int
	cmd := &cobra.Command{
		Use:   "locks [LOCKSPACE]",
		Short: "Show the cluster's locks: resources, masters, queues and holders",
		Long: `List every resource that has locks, across the cluster (in the lockspaces
you may use; root sees all): its master node, whether its value block is
valid, and its locks in queue order with their owner (node:pid), state and
modes. A persistent lock whose process ended is shown "(orphan)".

With --purge LOCKSPACE, release this node's orphans in LOCKSPACE instead
(those of --pid only, when given): run it on the node the orphan's owner
ran on.`,
		Example: `  ssi locks
  ssi locks --purge myapp
  ssi locks --purge --pid 4242 myapp`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !purge && cmd.Flags().Changed("pid") {
				return usageError{fmt.Errorf("--pid goes with --purge (see `ssi locks --help`)")}
			}
			if purge && len(args) != 1 {
				return usageError{fmt.Errorf("--purge needs the LOCKSPACE whose orphans to release (see `ssi locks --help`)")}
			}
			if pid < 0 {
				return usageError{fmt.Errorf("--pid %d: want a process id (see `ssi locks --help`)", pid)}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			conn, err := localapi.Dial(ctx, g.socket("dlmd"))
			if err != nil {
				if localapi.IsUnavailable(err) {
					return fmt.Errorf("dlmd is not running on this node: start it with `systemctl start openssi-dlmd`")
				}
				return err
			}
			defer conn.Close()
			if purge {
				r, err := dlmv1.NewDlmClient(conn).Purge(ctx, &dlmv1.PurgeRequest{Lockspace: args[0], Pid: int32(pid)})
				if err != nil {
					return fmt.Errorf("purge %s: %s", args[0], statusText(err))
				}
				n := r.GetReleased()
				fmt.Fprintf(g.out, "released %d orphaned lock%s in %s\n", n, plural(n), args[0])
				return nil
			}
			req := &dlmv1.LocksRequest{}
			if len(args) == 1 {
				req.Lockspace = args[0]
			}
			r, err := dlmv1.NewDlmClient(conn).Locks(ctx, req)
			if err != nil {
				return fmt.Errorf("locks: %s", statusText(err))
			}
			renderLocks(g.out, r)
			for _, e := range r.GetErrors() {
				fmt.Fprintln(g.errOut, "ssi: warning: "+e)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&purge, "purge", false, "release this node's orphaned persistent locks in LOCKSPACE")
	cmd.Flags().IntVar(&pid, "pid", 0, "with --purge: only the orphans of this process")
	return cmd
}

func plural(n uint32) string {
	if n == 1 {
		return ""
	}
	return "s"
}

var stateNames = map[dlmv1.LockState]string{
	dlmv1.LockState_LOCK_STATE_GRANTED: "granted", dlmv1.LockState_LOCK_STATE_CONVERTING: "converting",
	dlmv1.LockState_LOCK_STATE_WAITING: "waiting",
}

// statusText is a dlmd status error as the user reads it: dlmd's message
// carries the detail only, the reason is the code.
func statusText(err error) string {
	s := status.Convert(err)
	switch s.Code() {
	case codes.PermissionDenied:
		return "permission denied: " + s.Message()
	case codes.InvalidArgument:
		return "invalid argument: " + s.Message()
	}
	return s.Message()
}

func modeName(m dlmv1.Mode) string {
	if m == dlmv1.Mode_MODE_UNSPECIFIED {
		return "-"
	}
	return strings.TrimPrefix(m.String(), "MODE_")
}

// renderLocks prints one block per resource.
func renderLocks(w io.Writer, r *dlmv1.LocksReply) {
	if len(r.GetResources()) == 0 {
		fmt.Fprintln(w, "no locks")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LOCKSPACE\tRESOURCE\tMASTER\tLVB\tOWNER\tSTATE\tGRANTED\tREQUESTED")
	for _, res := range r.GetResources() {
		lvb := "valid"
		if !res.GetLvbValid() {
			lvb = "invalid"
		}
		for i, l := range res.GetLocks() {
			ls, name, master, v := res.GetLockspace(), res.GetName(), fmt.Sprint(res.GetMaster()), lvb
			if i > 0 {
				ls, name, master, v = "", "", "", ""
			}
			owner := fmt.Sprintf("%d:%d", l.GetNode(), l.GetPid())
			state := stateNames[l.GetState()]
			if l.GetOrphan() {
				state += " (orphan)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ls, name, master, v, owner, state, modeName(l.GetGranted()), modeName(l.GetRequested()))
		}
	}
	tw.Flush()
}
