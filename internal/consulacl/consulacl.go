// Package consulacl holds the one Consul ACL policy of OpenSSI: the rules
// of the token the daemons of one node use. The lab creates it for each
// node, `ssi consul policy` prints it for an administrator (and the Ansible
// role), and its integration test runs clmsd and dlmd under it against a
// Consul cluster with ACLs on and default deny.
//
// What a node's token may do, and why:
//
//   - node <name> write, agent <name> read: the daemons register their
//     services on their own agent and ask it who it is.
//   - node_prefix "" read, service_prefix "openssi-" read: the gossip
//     member list, the peers' catalog entries and their health.
//   - service openssi-<daemon> write: the discovery registration (and, until
//     per-node identities, the Connect leaf of that name).
//   - service openssi-<daemon>.<name> write: the per-node Connect identity,
//     whose leaf certificate names the node; no other node's token can
//     fetch it.
//   - session <name> write: clmsd's membership session on its own node.
//   - key_prefix openssi/ read; write only on the node's own membership keys
//     (openssi/clms/nodes/N, alive/N, leaving/N), the shared view
//     openssi/clms/view, the lockspace records under openssi/dlm/ and
//     vprocd's load-leveling list under openssi/vproc/loadlevel/, and
//     openssi-keepalived's registrations, placements and moves under
//     openssi/keepalive/.
//     With automatic numbering (number 0) the node must be able to claim
//     any free number, so it may write every key under openssi/clms/: every
//     node's root is then trusted with the number table.
//     Nothing under openssi/rootkeys/: the daemons' token is also user
//     openssi's (clmsd and dlmd run as it).
//
// A second token per node, the root token ([RootRules]), is read only by
// the daemons that run as root (vprocd, initfailover). It may write only
// the node's own pins under openssi/rootkeys/<node>/ (internal/rootkey):
// the keys peers believe those daemons on, since the agent hands any
// Connect certificate of the node, private key included, to user openssi.
package consulacl

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MaxNodeNumber is the largest node number (clmsd's membership.MaxNodeNumber;
// a test keeps the two equal).
const MaxNodeNumber = 511

// Daemons are the OpenSSI daemons that run under a node's token (the names
// of internal/daemons.All; a test keeps the two equal).
var Daemons = []string{"clmsd", "dlmd", "vprocd", "initfailover", "keepalived", "lvsd", "cfsd"}

// NoService are the daemons of Daemons with no peer protocol
// (openssi-keepalived: its state is in Consul KV; openssi-lvsd: its
// registrations are the backends of LVSServicePrefix): they register no
// openssi-<daemon> service and need no Connect identity, so their token
// gets no such service rule.
var NoService = []string{"keepalived", "lvsd"}

// LVSServicePrefix starts the catalog services of openssi-lvsd (lvsdspec.
// ServicePrefix; a test keeps the two equal): one per registered port
// (openssi-lvs-tcp-80), the node's address where it listens, and the
// director's (openssi-lvs-director).
const LVSServicePrefix = "openssi-lvs-"

// ServicePrefix starts every daemon's Consul service name (rpc.ServicePrefix).
const ServicePrefix = "openssi-"

// KVPrefix is the Consul KV prefix of OpenSSI's data (consul.Prefix).
const KVPrefix = "openssi/"

// ErrNodeName is wrapped when a Consul node name cannot be put in a policy.
var ErrNodeName = errors.New("invalid Consul node name")

// ErrNodeNumber is wrapped when a node number is out of range.
var ErrNodeNumber = errors.New("node number out of range")

// maxNameLen bounds a node name: a DNS label is 63 bytes, and the node's
// per-daemon service name must stay a valid service name too.
const maxNameLen = 63

// CheckNodeName accepts a Consul node name made of 1-63 ASCII letters,
// digits, '-' and '_', starting with a letter or digit (what Consul accepts
// without warning; dots are refused because the per-node service name
// "<service>.<node>" must split at its last dot).
func CheckNodeName(name string) error {
	if name == "" {
		return fmt.Errorf("consulacl: %w: empty", ErrNodeName)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("consulacl: %w: %q is longer than %d bytes", ErrNodeName, name, maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || (i > 0 && (c == '-' || c == '_'))
		if !ok {
			return fmt.Errorf("consulacl: %w: %q: want letters, digits, '-' and '_', starting with a letter or digit", ErrNodeName, name)
		}
	}
	return nil
}

// CheckNodeNumber accepts 0 (automatic numbering) and 1..MaxNodeNumber.
func CheckNodeNumber(number int) error {
	if number < 0 || number > MaxNodeNumber {
		return fmt.Errorf("consulacl: %w: %d, want 1..%d, or 0 for automatic numbering", ErrNodeNumber, number, MaxNodeNumber)
	}
	return nil
}

// PolicyName is the name of the node's policy in Consul.
func PolicyName(node string) string { return "openssi-node-" + node }

// RootPolicyName is the name of the node's root policy in Consul.
func RootPolicyName(node string) string { return "openssi-root-" + node }

// RootKeysPrefix is where the root daemons' pins live (internal/rootkey):
// openssi/rootkeys/<node>/<service>.
const RootKeysPrefix = KVPrefix + "rootkeys/"

// RootKeys returns the prefix of node's pins: the node name in lower case
// (internal/rootkey.Key), since KV rules compare keys exactly.
func RootKeys(node string) string { return RootKeysPrefix + strings.ToLower(node) + "/" }

// RootRules returns the ACL rules, in HCL, of the root token of the
// Consul node name: what vprocd and initfailover, running as root, publish
// their peer keys with. It may write the node's own pins and nothing else.
func RootRules(name string) (string, error) {
	if err := CheckNodeName(name); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# OpenSSI root daemons (vprocd, initfailover) of Consul node %q.\n", name)
	b.WriteString("# Generated by `ssi consul policy --root`; see internal/consulacl.\n")
	b.WriteString("# Keep this token root-only (/etc/openssi/consul-root.token, root:root 0600);\n# never hand it to the daemons that run as user openssi.\n\n")
	b.WriteString("# Publish the peer keys of this node's root daemons: their peers believe\n# them on these keys, not on a Connect certificate.\n")
	fmt.Fprintf(&b, "key_prefix %q {\n  policy = %q\n}\n", RootKeys(name), "write")
	return b.String(), nil
}

// NodeService is the per-node Connect identity of a daemon:
// "openssi-dlmd" on node "node2" is "openssi-dlmd.node2".
func NodeService(service, node string) string { return service + "." + node }

// NodeRules returns the ACL rules, in HCL, of the token the OpenSSI daemons
// of the Consul node name use, the node having number (pinned with
// clmsd.node_number) or 0 (claimed automatically).
func NodeRules(name string, number int) (string, error) {
	if err := CheckNodeName(name); err != nil {
		return "", err
	}
	if err := CheckNodeNumber(number); err != nil {
		return "", err
	}
	var b strings.Builder
	rule := func(kind, subject, policy, why string) {
		if why != "" {
			fmt.Fprintf(&b, "# %s\n", why)
		}
		fmt.Fprintf(&b, "%s %q {\n  policy = %q\n}\n", kind, subject, policy)
	}
	if number == 0 {
		fmt.Fprintf(&b, "# OpenSSI daemons of Consul node %q (node number claimed automatically).\n", name)
	} else {
		fmt.Fprintf(&b, "# OpenSSI daemons of Consul node %q, node number %d (clmsd.node_number).\n", name, number)
	}
	b.WriteString("# Generated by `ssi consul policy`; see internal/consulacl.\n\n")
	rule("node", name, "write", "Register the daemons' services on this node's agent.")
	rule("agent", name, "read", "Ask the local agent who it is.")
	rule("node_prefix", "", "read", "The gossip members and the nodes of the peers' catalog entries.")
	rule("service_prefix", ServicePrefix, "read", "Find the peers' daemons in the catalog.")
	b.WriteString("# Each daemon's discovery registration, and its per-node Connect identity:\n# the leaf certificate of <service>.<node> names this node and no other.\n")
	for _, d := range Daemons {
		if slices.Contains(NoService, d) {
			continue
		}
		rule("service", ServicePrefix+d, "write", "")
		rule("service", NodeService(ServicePrefix+d, name), "write", "")
	}
	rule("service_prefix", LVSServicePrefix, "write", "openssi-lvsd: this node as a backend of each registered port it listens on, and\n# the director's entry. Any node may claim any number in them: the director\n# believes an entry only from the Consul node holding the number it claims.")
	rule("session", name, "write", "clmsd's membership session on this node.")
	rule("key_prefix", KVPrefix, "read", "Read the membership, the lockspace records and the root daemons' pins.")
	if number == 0 {
		rule("key_prefix", KVPrefix+"clms/", "write",
			"Automatic numbering: this node may claim any free number, so every node's\n# root is trusted with the whole number table. Pin clmsd.node_number and\n# run `ssi consul policy NODE NUMBER` to confine it to its own keys.")
	} else {
		n := fmt.Sprint(number)
		b.WriteString("# This node's own membership keys, and the shared view.\n")
		for _, k := range []string{"clms/nodes/" + n, "clms/alive/" + n, "clms/leaving/" + n, "clms/view"} {
			rule("key", KVPrefix+k, "write", "")
		}
	}
	rule("key_prefix", KVPrefix+"dlm/", "write", "dlmd's lockspace records.")
	rule("key_prefix", KVPrefix+"vproc/loadlevel/", "write", "vprocd's runtime list of programs placed by load (ssi loadlevel; root only through vprocd's local API).")
	rule("key_prefix", KVPrefix+"keepalive/", "write", "openssi-keepalived's registrations, where each application runs and the moves asked for\n# (ssi keepalive add/move/remove: root only through its local API).")
	rule("key_prefix", KVPrefix+"lvs/", "write", "openssi-lvsd's ports registered at run time (ssi vip port add/remove: root only\n# through its local API).")
	return b.String(), nil
}
