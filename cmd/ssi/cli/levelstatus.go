package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/client/vproc"
)

// newLevelStatus is `ssi loadlevel status`.
func newLevelStatus(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the load leveler: each node's load as this node believes it, and its recent decisions",
		Long: `Show this node's load leveler (vprocd.leveler): whether it runs, its period,
cool-down and stability factor; each node's load as this node believes it
(its own and the freshest heard); and its last decisions, oldest first: a
process moved (CPID from->to) or a move that failed (the process stays where
it was), or no move and why (balanced: no node above a peer by more than the
margin; stability: every process too heavy for the stability rule;
cool-down: the processes that would matter moved too recently;
nothing-migratable; in-flight: the previous move has not ended; disabled).
The same answer over consecutive periods is one line with its count.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usageError{fmt.Errorf("-o %q is not valid: want table or json", output)}
			}
			c, err := g.vproc(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.LevelStatus(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(g.out, st)
			}
			renderLevelStatus(g.out, st)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// renderLevelStatus prints a leveler's status; ages are by the asked
// node's clock.
func renderLevelStatus(w io.Writer, st vproc.LevelStatus) {
	state := "off (vprocd.leveler.enabled: false)"
	if st.Enabled {
		state = fmt.Sprintf("on: every %v, cool-down %v, stability factor %g", st.Period, st.CoolDown, st.Stability)
	}
	fmt.Fprintf(w, "load leveler of node %d: %s\n", st.Node, state)
	if st.Moving != 0 {
		fmt.Fprintf(w, "moving %d to node %d\n", st.Moving, st.MovingTo)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tRUNQ\tCPUS\tPER CPU\tAGE")
	for _, l := range st.Loads {
		mark := ""
		if l.Self {
			mark = "*"
		}
		fmt.Fprintf(tw, "%d%s\t%.2f\t%d\t%.2f\t%s\n", l.Node, mark, l.Tasks(), l.CPUs, l.Tasks()/float64(max(l.CPUs, 1)), age(st.Now, l.Heard))
	}
	tw.Flush()
	if len(st.Decisions) == 0 {
		fmt.Fprintln(w, "\nno decision yet")
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AGO\tCOUNT\tDECISION\tCPID\tMOVE\tREASON")
	for _, d := range st.Decisions {
		cp, move := "-", "-"
		if d.CPID != 0 {
			cp = fmt.Sprint(d.CPID)
		}
		if d.From != 0 || d.To != 0 {
			move = fmt.Sprintf("%d->%d", d.From, d.To)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", age(st.Now, d.Last), d.Count, d.Kind, cp, move, d.Reason)
	}
	tw.Flush()
}
