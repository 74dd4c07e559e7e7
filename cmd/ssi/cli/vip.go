package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/client/lvs"
)

func (g *globals) lvs(cmd *cobra.Command) (*lvs.Client, error) {
	return lvs.New(cmd.Context(), lvs.WithSocket(g.socket("lvsd")))
}

func newVip(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "vip",
		Short: "The cluster IP address: the VIPs, the director holding them and the nodes serving each port",
		Long: `The cluster IP address (openssi-lvsd, the HA-LVS of the 2004 OpenSSI). One
node, the director, holds the VIPs of lvsd.vips and forwards each registered
port (lvsd.ports, ssi vip port add) to the nodes whose processes listen on
it: a node joins a port's pool within a second of listen() and leaves it
within a second of close(), or at once when it dies. Weighted
least-connections, the weights from the nodes' load. The connection counts
are the director's.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usageError{fmt.Errorf("-o %q is not valid: want table or json", output)}
			}
			c, err := g.lvs(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(g.out, st)
			}
			renderVip(g.out, st, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.AddCommand(newVipPort(g))
	return cmd
}

func renderVip(w io.Writer, st lvs.Status, now time.Time) {
	if len(st.VIPs) == 0 {
		fmt.Fprintln(w, "no VIP (see lvsd.vips in /etc/openssi/openssi.yaml)")
	}
	var vips []string
	for _, v := range st.VIPs {
		vips = append(vips, v.Address+" on "+v.Interface)
	}
	if len(vips) > 0 {
		fmt.Fprintf(w, "VIP: %s\n", strings.Join(vips, ", "))
	}
	switch {
	case st.Directing:
		fmt.Fprintf(w, "director: node %d (this node, since %s)\n", st.Director, ago(now, st.Since))
	case st.Director != 0:
		fmt.Fprintf(w, "director: node %d\n", st.Director)
	default:
		fmt.Fprintln(w, "director: none")
	}
	if len(st.Listening) > 0 {
		fmt.Fprintf(w, "node %d listens on: %s\n", st.Node, strings.Join(st.Listening, ", "))
	}
	if len(st.Ports) == 0 {
		fmt.Fprintln(w, "no registered port (see lvsd.ports, ssi vip port add)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tOPTIONS\tNODE\tBACKEND\tWEIGHT\tACTIVE")
	for _, p := range st.Ports {
		opts := portOptions(p)
		if len(p.Backends) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\n", p.Port, opts)
		}
		for i, b := range p.Backends {
			port := p.Port
			if i > 0 {
				port, opts = "", ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\n", port, opts, b.Node, b.Address, b.Weight, b.Active)
		}
	}
	_ = tw.Flush()
}

func portOptions(p lvs.Port) string {
	var o []string
	if p.ProxyProtocol {
		o = append(o, "proxy-protocol")
	}
	if p.Affinity == "source" {
		o = append(o, "affinity "+p.AffinityTimeout.String())
	}
	if len(p.Users) > 0 {
		o = append(o, "users "+strings.Join(p.Users, " "))
	}
	if !p.FromConfig {
		o = append(o, "added")
	}
	if len(o) == 0 {
		return "-"
	}
	return strings.Join(o, ",")
}

func newVipPort(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "port",
		Short: "Register or unregister a port of the VIP clusterwide (root)",
		Args:  noArgs,
	}
	cmd.AddCommand(newVipPortAdd(g), newVipPortRemove(g))
	return cmd
}

func newVipPortAdd(g *globals) *cobra.Command {
	var (
		p       lvs.Port
		replace bool
	)
	cmd := &cobra.Command{
		Use:   "add PROTO/PORT",
		Short: "Register a port (tcp/N or udp/N): nodes listening on it get its connections (root)",
		Long: `Register a port in Consul KV: every node whose process listens on it joins
its pool, and the director forwards the VIP's connections on it to them.
--proxy-protocol sends the backend a PROXY protocol v2 header with the
client's address (TCP, user-space proxy only); --affinity source keeps a
client on its backend for --affinity-timeout after its last connection.
Only root's listening sockets put a node into the pool, and those of each
--user (a user name or uid, known on every node; repeatable): another local
user listening on the port does not draw its clients.`,
		Example: "  ssi vip port add tcp/8080 --user www-data --affinity source --affinity-timeout 10m",
		Args:    oneArg("PROTO/PORT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p.Port = args[0]
			c, err := g.lvs(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.AddPort(cmd.Context(), p, replace); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s registered\n", p.Port)
			return nil
		},
	}
	cmd.Flags().BoolVar(&p.ProxyProtocol, "proxy-protocol", false, "send the client's address with a PROXY protocol v2 header")
	cmd.Flags().StringVar(&p.Affinity, "affinity", "none", "none or source (keep a client on its backend)")
	cmd.Flags().DurationVar(&p.AffinityTimeout, "affinity-timeout", 0, "how long a client keeps its backend after its last connection (default 5m)")
	cmd.Flags().StringArrayVar(&p.Users, "user", nil, "a user (name or uid) whose listening sockets count besides root's (repeatable)")
	cmd.Flags().BoolVar(&replace, "replace", false, "change the options of a registered port")
	return cmd
}

func newVipPortRemove(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove PROTO/PORT",
		Short: "Unregister a port registered with ssi vip port add (root)",
		Args:  oneArg("PROTO/PORT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.lvs(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.RemovePort(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s unregistered\n", args[0])
			return nil
		},
	}
}
