package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/internal/localapi"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

func newLocks(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "locks [LOCKSPACE]",
		Short: "Show the cluster's locks: resources, masters, queues and holders",
		Long: `List every resource that has locks, across the cluster (in the lockspaces
you may use; root sees all): its master node, whether its value block is
valid, and its locks in queue order with their owner (node:pid), state and
modes.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			req := &dlmv1.LocksRequest{}
			if len(args) == 1 {
				req.Lockspace = args[0]
			}
			r, err := dlmv1.NewDlmClient(conn).Locks(ctx, req)
			if err != nil {
				return fmt.Errorf("locks: %s", status.Convert(err).Message())
			}
			renderLocks(g.out, r)
			for _, e := range r.GetErrors() {
				fmt.Fprintln(g.errOut, "ssi: warning: "+e)
			}
			return nil
		},
	}
}

var stateNames = map[dlmv1.LockState]string{
	dlmv1.LockState_LOCK_STATE_GRANTED: "granted", dlmv1.LockState_LOCK_STATE_CONVERTING: "converting",
	dlmv1.LockState_LOCK_STATE_WAITING: "waiting",
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
