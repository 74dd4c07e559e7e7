package cli

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/openssi/openssi/internal/consulacl"
)

func newConsul(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "consul",
		Short: "Help set up Consul for OpenSSI",
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newConsulPolicy(g))
	return cmd
}

func newConsulPolicy(g *globals) *cobra.Command {
	var root bool
	cmd := &cobra.Command{
		Use:   "policy [--root] NODE-NAME [NUMBER]",
		Short: "Print the Consul ACL policy of a node's OpenSSI daemons",
		Long: `Print, in HCL, the rules of the Consul ACL token that the OpenSSI daemons of
one node use: NODE-NAME is the node's Consul node name (node_name in its
Consul configuration), NUMBER its clmsd.node_number. With a NUMBER the node
may write only its own membership keys; without one (or with 0, automatic
numbering) it may write the whole number table, so every node's root is
trusted with it. Nothing is contacted: the output is for the administrator.

With a management token, on any node:

  ssi consul policy node2 2 > node2.hcl
  consul acl policy create -name openssi-node-node2 -rules @node2.hcl
  consul acl token create -description "OpenSSI daemons of node2" \
      -policy-name openssi-node-node2 -format json | jq -r .SecretID

then on node2 write that secret to /etc/openssi/consul.token (root:root,
mode 0600) and set cluster.consul.token_file to it in openssi.yaml.

With --root, print instead the policy of the node's root token, which only
the daemons that run as root (vprocd, initfailover) read: it may write only
the node's keys under openssi/rootkeys/<node>/, where those daemons publish
the keys their peers believe them on (the daemons' token cannot: user
openssi holds it, and can fetch any Connect certificate from the agent):

  ssi consul policy --root node2 > node2-root.hcl
  consul acl policy create -name openssi-root-node2 -rules @node2-root.hcl
  consul acl token create -description "OpenSSI root daemons of node2" \
      -policy-name openssi-root-node2 -format json | jq -r .SecretID

then on node2 write that secret to /etc/openssi/consul-root.token (root:root,
mode 0600; cluster.consul.root_token_file). Never hand it to user openssi.`,
		Example: "  ssi consul policy node2 2\n  ssi consul policy --root node2",
		Args: func(cmd *cobra.Command, args []string) error {
			if root && len(args) != 1 {
				return usageError{fmt.Errorf("%s --root takes NODE-NAME only, got %d argument(s) (see `%s --help`)", cmd.CommandPath(), len(args), cmd.CommandPath())}
			}
			if len(args) < 1 || len(args) > 2 {
				return usageError{fmt.Errorf("%s takes NODE-NAME and an optional NUMBER, got %d argument(s) (see `%s --help`)", cmd.CommandPath(), len(args), cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			if root {
				rules, err := consulacl.RootRules(args[0])
				if err != nil {
					return usageError{err}
				}
				_, err = fmt.Fprint(g.out, rules)
				return err
			}
			number := 0
			if len(args) == 2 {
				n, err := strconv.Atoi(args[1])
				if err != nil {
					return usageError{fmt.Errorf("NUMBER %q is not a node number: want 1..%d, or 0 for automatic numbering", args[1], consulacl.MaxNodeNumber)}
				}
				number = n
			}
			rules, err := consulacl.NodeRules(args[0], number)
			if err != nil {
				return usageError{err}
			}
			_, err = fmt.Fprint(g.out, rules)
			return err
		},
	}
	cmd.Flags().BoolVar(&root, "root", false, "print the policy of the node's root token (vprocd's and initfailover's peer keys)")
	return cmd
}
