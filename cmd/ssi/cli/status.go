package cli

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/client/health"
	"github.com/openssi/openssi/client/vproc"
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
	// CRIU is vprocd's CRIU state (vprocd only, when it answers).
	CRIU *vproc.CRIU `json:"criu,omitempty"`
	// CRIUErr is why vprocd did not say it.
	CRIUErr string `json:"criu_error,omitempty"`
}

func newStatus(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show this node's OpenSSI daemons and their health",
		Long: `Ask each OpenSSI daemon of this node for its health over its local socket.
STATE is SERVING, NOT_SERVING (running but not ready), or NOT RUNNING.
Under vprocd, the state of CRIU it found at start: "ready: criu 4.2.1 at
/usr/sbin/criu" (it moves unmodified programs), or missing, broken,
too-old or check-failed and why (only cooperative programs move then).
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
				if d.Name == "vprocd" && h.State != "NOT RUNNING" {
					h.CRIU, h.CRIUErr = g.criuState(cmd.Context())
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
					switch {
					case r.CRIU != nil:
						fmt.Fprintf(tw, "\t\t\tcriu: %s\n", oneLine(r.CRIU.String()))
					case r.CRIUErr != "":
						fmt.Fprintf(tw, "\t\t\tcriu: unknown: %s\n", r.CRIUErr)
					}
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

// criuState asks this node's vprocd for its CRIU state; the string says
// why it could not when the state is nil.
func (g *globals) criuState(ctx context.Context) (*vproc.CRIU, string) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := g.vproc(ctx)
	if err != nil {
		return nil, oneLine(err.Error())
	}
	defer c.Close()
	st, err := c.CRIU(ctx)
	if err != nil {
		return nil, oneLine(err.Error())
	}
	return &st, ""
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
