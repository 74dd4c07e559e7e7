package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/client/dlm"
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
ran on. Only your own orphans are released (root: everyone's).

Names that are not plain printable text are shown quoted, with control
characters and bytes that are not UTF-8 escaped.`,
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
			return withDLM(cmd, g, func(ctx context.Context, c *dlm.Client) error {
				if purge {
					n, err := c.Purge(ctx, args[0], pid)
					if err != nil {
						return err
					}
					fmt.Fprintf(g.out, "released %d orphaned lock%s in %s\n", n, plural(n), args[0])
					return nil
				}
				var opts []dlm.ListOption
				if len(args) == 1 {
					opts = append(opts, dlm.InLockspace(args[0]))
				}
				r, err := c.Locks(ctx, opts...)
				if err != nil {
					return err
				}
				renderLocks(g.out, r)
				for _, e := range r.Errors {
					fmt.Fprintln(g.errOut, "ssi: warning: "+e)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&purge, "purge", false, "release this node's orphaned persistent locks in LOCKSPACE")
	cmd.Flags().IntVar(&pid, "pid", 0, "with --purge: only the orphans of this process")
	return cmd
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func modeName(m dlm.Mode) string {
	if m == 0 {
		return "-"
	}
	return m.String()
}

// renderLocks prints one block per resource.
func renderLocks(w io.Writer, r *dlm.Listing) {
	if len(r.Resources) == 0 {
		fmt.Fprintln(w, "no locks")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LOCKSPACE\tRESOURCE\tMASTER\tLVB\tOWNER\tSTATE\tGRANTED\tREQUESTED")
	for _, res := range r.Resources {
		lvb := "valid"
		if !res.ValueValid {
			lvb = "invalid"
		}
		for i, l := range res.Locks {
			ls, name, master, v := escapeName(res.Lockspace), escapeName(res.Name), fmt.Sprint(res.Master), lvb
			if i > 0 {
				ls, name, master, v = "", "", "", ""
			}
			owner := fmt.Sprintf("%d:%d", l.Node, l.PID)
			state := l.State.String()
			if l.Orphan {
				state += " (orphan)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ls, name, master, v, owner, state, modeName(l.Granted), modeName(l.Requested))
		}
	}
	tw.Flush()
}

// escapeName returns a lockspace or resource name as the table shows it:
// as is when every character is printable and none is a space, a quote or
// a backslash; otherwise quoted in Go syntax, with \t, \n, \x1b and bytes
// that are not UTF-8 escaped, so that no name (which any user may choose)
// can forge rows or columns or send the terminal escape sequences.
func escapeName(s string) string {
	if s != "" && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return !unicode.IsPrint(r) || r == ' ' || r == '"' || r == '\\'
	}) {
		return s
	}
	return strconv.Quote(s)
}
