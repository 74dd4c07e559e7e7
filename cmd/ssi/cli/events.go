package cli

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newEvents(g *globals) *cobra.Command {
	var from uint64
	var fromSet bool
	var output string
	cmd := &cobra.Command{
		Use:   "events [--from EPOCH]",
		Short: "Follow membership events (NODEUP, NODEDOWN, NODELEAVE)",
		Long: `Print membership events as they happen, until interrupted. Without --from,
only events after the current epoch are shown; with --from EPOCH, the retained
events after EPOCH are replayed first, so a consumer that recorded the last
epoch it saw misses nothing.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageError{fmt.Errorf("-o %q is not valid: want text or json", output)}
			}
			ctx := cmd.Context()
			c, err := g.cluster(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			if !fromSet {
				v, err := c.Nodes(ctx)
				if err != nil {
					return err
				}
				from = v.Epoch
				if output == "text" {
					fmt.Fprintf(g.out, "# following events after epoch %d (Ctrl-C to stop)\n", from)
				}
			}
			w := c.Watch(ctx, from)
			enc := json.NewEncoder(g.out)
			for w.Next() {
				if output == "json" {
					if err := enc.Encode(w.Event()); err != nil {
						return err
					}
					continue
				}
				renderEvent(g.out, w.Event())
			}
			return w.Err()
		},
	}
	cmd.Flags().Uint64Var(&from, "from", 0, "replay the events after this epoch first")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json (one object per line)")
	cmd.PreRun = func(cmd *cobra.Command, _ []string) { fromSet = cmd.Flags().Changed("from") }
	return cmd
}

func newNode(g *globals) *cobra.Command {
	node := &cobra.Command{
		Use:   "node",
		Short: "Act on this node's membership",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{fmt.Errorf("ssi node needs a subcommand: leave (see `ssi node --help`)")}
		},
	}
	var timeout time.Duration
	leave := &cobra.Command{
		Use:   "leave",
		Short: "Leave the cluster gracefully (root only)",
		Long: `Make this node leave the cluster: the other nodes see NODELEAVE, not
NODEDOWN, and clmsd exits. Start openssi-clmsd again to rejoin.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.cluster(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := contextTimeout(cmd, timeout)
			defer cancel()
			epoch, err := c.Leave(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "left the cluster at epoch %d\n", epoch)
			return nil
		},
	}
	leave.Flags().DurationVar(&timeout, "timeout", 15*time.Second, "how long to wait for the leave to be recorded")
	node.AddCommand(leave)
	return node
}
