package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/client/initnode"
	"github.com/openssi/openssi/daemons/initfailover/initfailoverspec"
)

func (g *globals) initnode(ctx context.Context) (*initnode.Client, error) {
	return initnode.New(ctx, initnode.WithSocket(g.socket("initfailover")))
}

// initNode returns the init node as initfailover reports it, 0 when it
// cannot tell within a second (not running, no init now): for the marks of
// ssi nodes and ssi status, which must not fail for it.
func (g *globals) initNode(ctx context.Context) int {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := g.initnode(ctx)
	if err != nil {
		return 0
	}
	defer c.Close()
	i, err := c.Init(ctx)
	if err != nil {
		return 0
	}
	return i.Node
}

func newInit(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Show the cluster's init node, the one running its singleton services",
		Long: `Show which node is the cluster's init node: the one node that runs the
cluster's singleton services (the units wanted by openssi-init.target and
those listed in initfailover.services). When it dies or is cut off another
node takes the role; the old one stops its services first. This node's
place in the election is shown too (waiting, holding: granted and waiting
for the old init's services to be surely gone, running: the init node,
stopping).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usageError{fmt.Errorf("-o %q is not valid: want table or json", output)}
			}
			c, err := g.initnode(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			i, err := c.Init(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(g.out, i)
			}
			renderInit(g.out, i, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.AddCommand(newInitMove(g))
	return cmd
}

func renderInit(w io.Writer, i initnode.Info, now time.Time) {
	if i.Node == 0 {
		fmt.Fprintln(w, "init node: none now")
	} else {
		fmt.Fprintf(w, "init node: %d\n", i.Node)
	}
	fmt.Fprintf(w, "this node (%d): %s since %s\n", i.ThisNode, i.State, ago(now, i.Since))
}

func newInitMove(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "move NODE",
		Short: "Hand the init role to another node (root)",
		Long: `Hand the init role over to NODE gracefully: the init node stops its
singleton services, then NODE starts them at once (no failover wait).
Returns when the init node has begun stopping them; see ssi init.`,
		Example: "  ssi init move 2",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("%s takes one NODE, got %d argument(s)", cmd.CommandPath(), len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 {
				return usageError{fmt.Errorf("NODE %q is not a node number", args[0])}
			}
			c, err := g.initnode(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			from, err := c.Move(cmd.Context(), n)
			if err != nil {
				return err
			}
			if from == n {
				fmt.Fprintf(g.out, "node %d is the init node already\n", n)
			} else {
				fmt.Fprintf(g.out, "init role moving from node %d to node %d\n", from, n)
			}
			return nil
		},
	}
}

func newService(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Act on a systemd unit of any or every node",
		Long: `Act on a systemd unit of any or every node through systemd's D-Bus API
there, as systemctl would locally: status, start, stop, restart, enable,
disable. -n NODE (repeatable) picks nodes, --all every UP node; neither is
this node. Prints one line per node: the node, the unit's load and active
states, since when, and the cluster pid of its main process. status is
open to every user; the others are root's. Exits 1 when the action failed
on any node.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	for _, a := range []initnode.Action{initnode.Status, initnode.Start, initnode.Stop, initnode.Restart, initnode.Enable, initnode.Disable} {
		cmd.AddCommand(newServiceAction(g, a))
	}
	return cmd
}

func newServiceAction(g *globals, a initnode.Action) *cobra.Command {
	var nodes []int
	var all bool
	var output string
	cmd := &cobra.Command{
		Use:     a.String() + " UNIT [-n NODE]... [--all]",
		Short:   fmt.Sprintf("%s a unit on some or every node", a),
		Long:    serviceLong(a),
		Example: fmt.Sprintf("  ssi service %s nginx.service --all", a),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("%s takes one UNIT, got %d argument(s)", cmd.CommandPath(), len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return usageError{fmt.Errorf("-o %q is not valid: want table or json", output)}
			}
			if all && len(nodes) > 0 {
				return usageError{fmt.Errorf("give -n NODE or --all, not both")}
			}
			for _, n := range nodes {
				if n < 1 {
					return usageError{fmt.Errorf("-n %d is not a node number", n)}
				}
			}
			var target []initnode.Target
			switch {
			case all:
				target = append(target, initnode.All())
			case len(nodes) > 0:
				target = append(target, initnode.Nodes(nodes...))
			}
			// As systemctl: nginx is nginx.service.
			unit := initfailoverspec.UnitName(args[0])
			c, err := g.initnode(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			lines, err := c.Service(cmd.Context(), a, unit, target...)
			if err != nil {
				return err
			}
			if output == "json" {
				err = writeJSON(g.out, lines)
			} else {
				renderUnits(g.out, unit, lines, time.Now())
			}
			if err != nil {
				return err
			}
			failed := 0
			for _, l := range lines {
				if l.Err != "" {
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("%s %s failed on %d of %d node(s)", a, unit, failed, len(lines))
			}
			return nil
		},
	}
	cmd.Flags().IntSliceVarP(&nodes, "node", "n", nil, "node number (repeatable); default this node")
	cmd.Flags().BoolVar(&all, "all", false, "every UP node")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// serviceLong is the help text of ssi service ACTION.
func serviceLong(a initnode.Action) string {
	what, who := "Do what systemctl "+a.String()+" UNIT does", "Root only, as systemctl "+a.String()+" is."
	if a == initnode.Status {
		what, who = "Show the states of UNIT", "Open to every user."
	}
	return fmt.Sprintf(`%s, on this node, on each -n NODE, or on every
UP node with --all, through systemd's D-Bus API there (the request goes to
that node's initfailover over mutual TLS). UNIT is a unit name
(nginx.service, backup.timer); without a type it is a service, as with
systemctl (nginx is nginx.service). %s

Prints one line per node: the node, the unit, its load state, its active
state (and sub-state) after the action, since when, and the cluster pid of
its main process (as ssi ps and ssi kill take it). A node where the action
failed (unknown unit, node not UP, systemd refused) gets a line saying why,
and ssi exits 1.`, what, who)
}

// renderUnits prints one line per node.
func renderUnits(w io.Writer, unit string, lines []initnode.Unit, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "NODE\tUNIT\tLOAD\tACTIVE\tSINCE\tMAIN-CPID\n")
	for _, l := range lines {
		if l.Err != "" {
			fmt.Fprintf(tw, "%d\t%s\terror: %s\n", l.Node, unit, l.Err) // not a cell: no column widens
			continue
		}
		cp := "-"
		if l.MainCPID != 0 {
			cp = strconv.FormatInt(l.MainCPID, 10)
		}
		active := l.ActiveState
		if l.SubState != "" {
			active += " (" + l.SubState + ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", l.Node, unit, l.LoadState, active, ago(now, l.Since), cp)
	}
	tw.Flush()
}
