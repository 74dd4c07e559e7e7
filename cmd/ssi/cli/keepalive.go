package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/client/keepalive"
)

func (g *globals) keepalive(cmd *cobra.Command) (*keepalive.Client, error) {
	return keepalive.New(cmd.Context(), keepalive.WithSocket(g.socket("keepalived")))
}

func newKeepalive(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keepalive",
		Short: "Monitored applications: each runs on one node, restarted in place or on the next node",
		Long: `Monitored applications (openssi-keepalived, the spawndaemon and keepalive of
the 2004 OpenSSI). Each runs as a transient systemd unit on exactly one node,
under its declared user. It is restarted in place when it exits or fails its
check; after its retries within its window, or when its node dies, it is
started on the next node by its placement rule. Declare one in
/etc/openssi/keepalive.d/NAME.yaml on the nodes that may run it, or register
it clusterwide with ssi keepalive add (Consul KV). Without a subcommand:
ssi keepalive list.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return listKeepalive(g, cmd, "", "table") },
	}
	cmd.AddCommand(newKeepaliveList(g), newKeepaliveStatus(g), newKeepaliveAdd(g), newKeepaliveMove(g), newKeepaliveRemove(g))
	return cmd
}

func newKeepaliveList(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the monitored applications and the node running each",
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return listKeepalive(g, cmd, "", output) },
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func newKeepaliveStatus(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show one monitored application: its declaration, node, state and last failure",
		Args:  oneArg("NAME"),
		RunE:  func(cmd *cobra.Command, args []string) error { return listKeepalive(g, cmd, args[0], output) },
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func oneArg(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usageError{fmt.Errorf("%s takes one %s, got %d argument(s)", cmd.CommandPath(), what, len(args))}
		}
		return nil
	}
}

func listKeepalive(g *globals, cmd *cobra.Command, name, output string) error {
	if output != "table" && output != "json" {
		return usageError{fmt.Errorf("-o %q is not valid: want table or json", output)}
	}
	c, err := g.keepalive(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	apps, errs, err := c.List(cmd.Context(), name)
	if err != nil {
		return err
	}
	if output == "json" {
		return writeJSON(g.out, struct {
			Apps   []keepalive.Status `json:"apps"`
			Errors []string           `json:"errors,omitempty"`
		}{apps, errs})
	}
	if name != "" {
		renderKeepaliveStatus(g.out, apps[0], time.Now())
	} else {
		renderKeepaliveList(g.out, apps, time.Now())
	}
	for _, e := range errs {
		fmt.Fprintln(g.errOut, e)
	}
	return nil
}

func nodeOrDash(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

func renderKeepaliveList(w io.Writer, apps []keepalive.Status, now time.Time) {
	if len(apps) == 0 {
		fmt.Fprintln(w, "no monitored application (see ssi keepalive add, /etc/openssi/keepalive.d)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tNODE\tSTATE\tSINCE\tRESTARTS\tSOURCE\tCOMMAND")
	for _, a := range apps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", a.App.Name, nodeOrDash(a.Node), a.State, ago(now, a.Since), a.Restarts, a.Source,
			strings.Join(a.App.Command, " "))
	}
	_ = tw.Flush()
}

func renderKeepaliveStatus(w io.Writer, a keepalive.Status, now time.Time) {
	d := a.App
	fmt.Fprintf(w, "%s: %s on node %s since %s, %d restart(s) in place\n", d.Name, a.State, nodeOrDash(a.Node), ago(now, a.Since), a.Restarts)
	if a.Message != "" {
		fmt.Fprintf(w, "  last: %s\n", a.Message)
	}
	if len(a.GaveUp) > 0 {
		fmt.Fprintf(w, "  given up on node(s): %s\n", joinInts(a.GaveUp))
	}
	fmt.Fprintf(w, "  command: %s (user %s)\n", strings.Join(d.Command, " "), d.User)
	nodes := "any UP node"
	switch {
	case d.Primary != 0 && len(d.Backups) > 0:
		nodes = fmt.Sprintf("primary %d, backups %s", d.Primary, joinInts(d.Backups))
	case d.Primary != 0:
		nodes = fmt.Sprintf("primary %d, then any UP node", d.Primary)
	case len(d.Backups) > 0:
		nodes = "nodes " + joinInts(d.Backups)
	}
	fmt.Fprintf(w, "  nodes: %s; placement %s\n", nodes, d.Placement)
	check := "none (only its exit)"
	if d.Check != "" {
		check = fmt.Sprintf("%s every %v", d.Check, d.CheckInterval)
	}
	fmt.Fprintf(w, "  check: %s; moves after %d failure(s) within %v\n", check, d.Retries, d.Within)
	fmt.Fprintf(w, "  declared by: %s\n", a.Source)
}

func joinInts(l []int) string {
	s := make([]string, len(l))
	for i, n := range l {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func newKeepaliveAdd(g *globals) *cobra.Command {
	var (
		app     keepalive.App
		backups string
		replace bool
	)
	cmd := &cobra.Command{
		Use:   "add NAME [flags] -- CMD [ARGS...]",
		Short: "Register a monitored application clusterwide (root)",
		Long: `Register a monitored application in Consul KV: every node that may run it
learns of it, and one starts it (its primary first). CMD is the program (a
path, or a name found in PATH on the node) and its arguments; no shell.
--check is exec:CMD (a shell command run as the application's user, exit 0
passes), tcp:PORT or tcp:HOST:PORT (a connection passes) or http:URL (a 2xx
or 3xx passes; http:PORT/PATH is on 127.0.0.1). After --retries failures
within --within on one node, the application is started on the next node by
--placement: last_node (stay where it last ran; else the first UP of the
primary and the backups) or round_robin (the next node of the list). Without
--backup any UP node may take it.`,
		Example: "  ssi keepalive add web --primary 1 --backup 2,3 --check http:8080/ --user www-data -- /usr/bin/python3 -m http.server 8080",
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash != 1 || len(args) < 2 {
				return usageError{fmt.Errorf("%s takes NAME, then -- and the command to run", cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			app.Name, app.Command = args[0], args[1:]
			if app.Retries < 1 {
				return usageError{fmt.Errorf("--retries %d: want 1..100", app.Retries)}
			}
			if backups != "" {
				for _, f := range strings.Split(backups, ",") {
					n, err := strconv.Atoi(strings.TrimSpace(f))
					if err != nil || n < 1 {
						return usageError{fmt.Errorf("--backup %q: want node numbers separated by commas", backups)}
					}
					app.Backups = append(app.Backups, n)
				}
			}
			c, err := g.keepalive(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.Add(cmd.Context(), app, replace); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s registered; ssi keepalive status %s shows where it runs\n", app.Name, app.Name)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&app.Primary, "primary", 0, "the node it prefers")
	f.StringVar(&backups, "backup", "", "the other nodes it may run on, in order (N,M,...; default any UP node)")
	f.StringVar(&app.Placement, "placement", "last_node", "where it goes next: last_node or round_robin")
	f.IntVar(&app.Retries, "retries", 3, "failures on one node that move it to the next")
	f.DurationVar(&app.Within, "within", time.Minute, "the window of --retries")
	f.StringVar(&app.Check, "check", "", "exec:CMD, tcp:[HOST:]PORT or http:URL (default: only its exit counts)")
	f.DurationVar(&app.CheckInterval, "check-interval", 2*time.Second, "how often the check runs")
	f.StringVar(&app.User, "user", "root", "the user it runs as")
	f.BoolVar(&replace, "replace", false, "replace a registration of the same name")
	return cmd
}

func newKeepaliveMove(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "move NAME NODE",
		Short: "Hand a monitored application to another node (root)",
		Long: `Hand NAME over to NODE gracefully: the node running it stops it, then NODE
starts it at once. Also forgets the nodes that gave it up after repeated
failures. Returns when the move is asked; see ssi keepalive status NAME.`,
		Example: "  ssi keepalive move web 2",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError{fmt.Errorf("%s takes NAME and NODE, got %d argument(s)", cmd.CommandPath(), len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 1 {
				return usageError{fmt.Errorf("NODE %q is not a node number", args[1])}
			}
			c, err := g.keepalive(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			from, err := c.Move(cmd.Context(), args[0], n)
			if err != nil {
				return err
			}
			if from == n {
				fmt.Fprintf(g.out, "%s runs on node %d already\n", args[0], n)
			} else {
				fmt.Fprintf(g.out, "%s moving from node %d to node %d\n", args[0], from, n)
			}
			return nil
		},
	}
}

func newKeepaliveRemove(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Stop and forget a registered application (root)",
		Args:  oneArg("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.keepalive(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.Remove(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s removed: the node running it stops it\n", args[0])
			return nil
		},
	}
}
