package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/client/vproc"
)

func (g *globals) vproc(ctx context.Context) (*vproc.Client, error) {
	return vproc.New(ctx, vproc.WithSocket(g.socket("vprocd")))
}

// nodesLoad prints what this node's vprocd believes of the cluster's load
// (`ssi nodes -o load`).
func (g *globals) nodesLoad(ctx context.Context) error {
	c, err := g.vproc(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	v, err := c.Loads(ctx)
	if err != nil {
		return err
	}
	renderLoads(g.out, v)
	return nil
}

// renderLoads prints a load view as a table; ages are by the asked node's
// clock.
func renderLoads(w io.Writer, v vproc.LoadView) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tRUNQ\tLOAD1\tCPUS\tFREE\tAGE")
	for _, l := range v.Loads {
		mark := ""
		if l.Self {
			mark = "*"
		}
		fmt.Fprintf(tw, "%d%s\t%.2f\t%.2f\t%d\t%s\t%s\n", l.Node, mark, l.Tasks(), l.Load1, l.CPUs, bytesHuman(l.FreeMem), age(v.Now, l.Heard))
	}
	tw.Flush()
	fmt.Fprintf(w, "load as node %d believes it (its own and the freshest heard, at most 8 peers, each at most 8s old); * is this node\n", v.Node)
}

// bytesHuman renders a size in bytes with a binary unit.
func bytesHuman(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%dB", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit && exp < 5; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ci", float64(b)/float64(div), "KMGTPE"[exp])
}

// age renders how long before now t was, to a tenth of a second.
func age(now, t time.Time) string {
	d := max(now.Sub(t), 0)
	return fmt.Sprintf("%.1fs", d.Seconds())
}

func newLoadLevel(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "loadlevel add|remove|list|status [NAME]",
		Short: "Manage the programs ssi exec places on the least-loaded node",
		Long: `A program registered for load leveling runs, when ssi exec (or a
client/vproc Exec) gives no node, on the least-loaded node as --auto would
place it. NAME is the program's name, as the command's last path element
(make, not /usr/bin/make). The list is openssi.yaml's vprocd.loadlevel on
each node plus the names added here, which every node shares. Adding and
removing needs root. The load leveler (vprocd.leveler) moves running
registered programs started --migratable from a loaded node to a less
loaded one; ssi loadlevel status shows its decisions.`,
	}
	one := func(use, short string, remove bool) *cobra.Command {
		return &cobra.Command{
			Use:   use + " NAME",
			Short: short,
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.vproc(cmd.Context())
				if err != nil {
					return err
				}
				defer c.Close()
				if remove {
					return c.RemoveLoadLevel(cmd.Context(), args[0])
				}
				return c.AddLoadLevel(cmd.Context(), args[0])
			},
		}
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the programs placed by load, and where each is registered",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.vproc(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			config, runtime, err := c.LoadLevels(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PROGRAM\tREGISTERED IN")
			for _, n := range config {
				fmt.Fprintf(tw, "%s\topenssi.yaml\n", n)
			}
			for _, n := range runtime {
				fmt.Fprintf(tw, "%s\tssi loadlevel add\n", n)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(one("add", "Register a program for load leveling (root)", false),
		one("remove", "Unregister a program added with ssi loadlevel add (root)", true), list, newLevelStatus(g))
	cmd.RunE = func(*cobra.Command, []string) error {
		return usageError{errors.New("usage: ssi loadlevel add|remove|list|status [NAME]")}
	}
	return cmd
}
