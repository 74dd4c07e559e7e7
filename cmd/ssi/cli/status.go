package cli

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/client/health"
	"github.com/openssi/openssi/internal/daemons"
)

func contextTimeout(cmd *cobra.Command, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), d)
}

// daemonHealth is one row of `ssi status`.
type daemonHealth struct {
	Daemon string `json:"daemon"`
	Unit   string `json:"unit"`
	State  string `json:"state"`
	Detail string `json:"detail,omitempty"`
}

func newStatus(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show this node's OpenSSI daemons and their health",
		Long: `Ask each OpenSSI daemon of this node for its health over its local socket.
STATE is SERVING, NOT_SERVING (running but not ready), or NOT RUNNING.
Exits 1 when any daemon is not serving.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usageError{fmt.Errorf("-o %q is not valid: want table or json", output)}
			}
			var rows []daemonHealth
			bad := 0
			for _, d := range daemons.All {
				h := checkHealth(cmd.Context(), g.socket(d.Name))
				h.Daemon, h.Unit = d.Name, d.Unit
				if h.State != "SERVING" {
					bad++
				}
				rows = append(rows, h)
			}
			if output == "json" {
				if err := writeJSON(g.out, rows); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "DAEMON\tUNIT\tSTATE\tDETAIL")
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Daemon, r.Unit, r.State, r.Detail)
				}
				tw.Flush()
				if n := g.initNode(cmd.Context()); n != 0 {
					fmt.Fprintf(g.out, "init node: %d (runs the cluster's singleton services; see ssi init)\n", n)
				}
			}
			if bad > 0 {
				return fmt.Errorf("%d of %d daemons not serving: see `journalctl -u openssi-<daemon>` and `systemctl status openssi.target`", bad, len(rows))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func checkHealth(ctx context.Context, socket string) daemonHealth {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := health.Check(ctx, socket)
	switch {
	case errors.Is(err, health.ErrNotRunning):
		return daemonHealth{State: "NOT RUNNING", Detail: "no answer on " + socket}
	case err != nil:
		return daemonHealth{State: string(health.Unknown), Detail: err.Error()}
	}
	return daemonHealth{State: string(st), Detail: socket}
}
