package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/client/cluster"
)

func newNodes(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the cluster's nodes with their state and clock skew",
		Long: `List every node the cluster has known: its number, name, address, state
(UP, DOWN or LEAVING), since when, and its clock offset relative to this node.
A skew above the threshold (clmsd.skew_threshold) is flagged with "!".
"+" marks the init node, the one running the cluster's singleton services
(see ssi init), when this node's initfailover says which it is.

-o load shows instead the load this node's vprocd believes each node has:
its own measurement and the freshest vectors heard from peers (each vprocd
sends its vector to one random peer a second): run queue, 1-minute load
average, CPUs, free memory and how long ago it was measured or heard.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" && output != "load" {
				return usageError{fmt.Errorf("-o %q is not valid: want table, json or load", output)}
			}
			if output == "load" {
				return g.nodesLoad(cmd.Context())
			}
			c, err := g.cluster(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.Nodes(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(g.out, v)
			}
			renderNodes(g.out, v, time.Now(), g.initNode(cmd.Context()))
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or load")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// renderNodes prints the view as a table; init, when not 0, is marked as
// the init node.
func renderNodes(w io.Writer, v cluster.View, now time.Time, init int) {
	if !v.Quorum {
		since := ""
		if !v.QuorumLostSince.IsZero() {
			since = ", lost " + ago(now, v.QuorumLostSince)
		}
		fmt.Fprintf(w, "WARNING: this node has lost the cluster (no Consul quorum reachable%s); the view below may be stale\n", since)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNAME\tADDRESS\tSTATE\tSINCE\tSKEW")
	warn := 0
	for _, n := range v.Nodes {
		mark := ""
		if n.Number == v.ThisNode {
			mark = "*"
		}
		if n.Number == init {
			mark += "+"
		}
		if n.SkewWarning {
			warn++
		}
		fmt.Fprintf(tw, "%d%s\t%s\t%s\t%s\t%s\t%s\n", n.Number, mark, n.Name, n.Address, n.State, ago(now, n.Since), skew(n))
	}
	tw.Flush()
	fmt.Fprintf(w, "epoch %d; * is this node", v.Epoch)
	if init != 0 {
		fmt.Fprint(w, "; + is the init node")
	}
	if warn > 0 {
		fmt.Fprintf(w, "; WARNING: %d node(s) with clock skew above %s: check NTP", warn, v.SkewThreshold)
	}
	fmt.Fprintln(w)
}

func skew(n cluster.Node) string {
	if !n.SkewKnown {
		return "-"
	}
	s := formatOffset(n.Skew)
	if n.SkewWarning {
		s += " !"
	}
	return s
}

func formatOffset(d time.Duration) string {
	sign := "+"
	if d < 0 {
		sign = "-"
		d = -d
	}
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%s%dµs", sign, d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%s%.1fms", sign, float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%s%.2fs", sign, d.Seconds())
	}
}

// ago renders how long ago t was, at a precision fit for a table.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm ago", int(d.Hours()), int(math.Mod(d.Minutes(), 60)))
	default:
		return t.UTC().Format("2006-01-02 15:04Z")
	}
}

// renderEvent prints one event line.
func renderEvent(w io.Writer, e cluster.Event) {
	fmt.Fprintf(w, "%s epoch=%d %s node=%d name=%s address=%s\n",
		e.Time.UTC().Format(time.RFC3339Nano), e.Epoch, e.Type, e.Node.Number, e.Node.Name, e.Node.Address)
}
