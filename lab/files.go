package lab

import (
	"fmt"
	"strings"

	"github.com/openssi/openssi/internal/consulagent"
)

// The files laid down in every node, the way the Ansible role will.

// Paths of Consul's files in a node.
const (
	consulTLSDir = "/etc/consul.d/tls"
	consulCA     = consulTLSDir + "/ca.pem"
	consulCert   = consulTLSDir + "/server.pem"
	consulKey    = consulTLSDir + "/server-key.pem"
)

// consulHCL is the node's Consul agent configuration: the first three nodes
// are servers, the rest clients; all join the servers and use the tuned
// gossip profile (or the one the lab was opened with). It is locked down as the shipped example says: gossip
// encrypted, the servers' RPC over TLS with verified names (clients get
// their certificates with auto_encrypt), ACLs on with default deny, and the
// HTTP API on a Unix socket only root and the daemons' user can open.
func consulHCL(n NodeState, servers []string, datacenter string, s *ConsulSecrets, gossip consulagent.Tuning, logLevel string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node_name  = %q\ndatacenter = %q\ndata_dir   = \"/var/lib/consul\"\n", n.Name, datacenter)
	fmt.Fprintf(&b, "bind_addr  = %q\nclient_addr = \"127.0.0.1\"\nlog_level  = %q\ndisable_update_check = true\nleave_on_terminate = true\n", n.IP, logLevel)
	quoted := make([]string, len(servers))
	for i, s := range servers {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	fmt.Fprintf(&b, "retry_join = [%s]\nretry_interval = \"1s\"\n", strings.Join(quoted, ", "))
	b.WriteString("ports {\n  dns  = -1\n  grpc = -1\n}\n")
	fmt.Fprintf(&b, "addresses {\n  http = \"unix://%s\"\n}\nunix_sockets {\n  user  = %q\n  group = \"0\"\n  mode  = \"0600\"\n}\n", ConsulSocket, ConsulSocketOwner)
	fmt.Fprintf(&b, "encrypt = %q\nencrypt_verify_incoming = true\nencrypt_verify_outgoing = true\n", s.GossipKey)
	if n.Server {
		fmt.Fprintf(&b, "server = true\nbootstrap_expect = %d\nconnect {\n  enabled = true\n}\n", len(servers))
		// A lab node that is killed comes back with the same data dir:
		// keep it a Raft voter instead of letting autopilot remove it.
		b.WriteString("autopilot {\n  cleanup_dead_servers = false\n}\n")
		fmt.Fprintf(&b, "tls {\n  defaults {\n    ca_file = %q\n    cert_file = %q\n    key_file = %q\n    verify_outgoing = true\n  }\n  internal_rpc {\n    verify_incoming = true\n    verify_server_hostname = true\n  }\n}\n", consulCA, consulCert, consulKey)
		b.WriteString("auto_encrypt {\n  allow_tls = true\n}\n")
	} else {
		fmt.Fprintf(&b, "tls {\n  defaults {\n    ca_file = %q\n    verify_outgoing = true\n  }\n  internal_rpc {\n    verify_server_hostname = true\n  }\n}\n", consulCA)
		b.WriteString("auto_encrypt {\n  tls = true\n}\n")
	}
	b.WriteString(consulagent.ACLHCL(consulagent.ACLSettings{Agent: n.Tokens.Agent, InitialManagement: s.ManagementToken, Server: n.Server}))
	b.WriteString(gossip.HCL())
	return b.String()
}

// openssiYAML is the node's /etc/openssi/openssi.yaml: only what the lab
// sets, everything else at its default (openssi.yaml(5)).
func openssiYAML(number int) string {
	return fmt.Sprintf(`# The OpenSSI lab's settings for this node; every other setting is at its
# default (see openssi.yaml(5)).
cluster:
  consul:
    # The agent's root-only socket, and this node's token (root:root 0600).
    address: unix://%s
    token_file: %s
clmsd:
  # Pinned, so that the node's Consul token may write its own membership
  # keys only (ssi consul policy node%d %d).
  node_number: %d
`, ConsulSocket, ConsulTokenFile, number, number, number)
}

// consulProfile lets a root shell's consul command find the agent's socket
// (the token is the lab's: lab exec and lab shell pass it).
const consulProfile = "export CONSUL_HTTP_ADDR=unix://" + ConsulSocket + "\n"

const consulUnit = `[Unit]
Description=Consul agent (OpenSSI lab)
Documentation=https://developer.hashicorp.com/consul
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
RuntimeDirectory=consul
RuntimeDirectoryMode=0755
ExecStart=/usr/local/bin/consul agent -config-dir=/etc/consul.d
ExecReload=/bin/kill -HUP $MAINPID
KillMode=process
KillSignal=SIGTERM
Restart=on-failure
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`

// networkFile gives host0 (the container side of the veth) its address.
// It sorts before the image's 80-container-host0.network, which would
// otherwise run DHCP.
func networkFile(ip string) string {
	return fmt.Sprintf("[Match]\nName=host0\n\n[Network]\nAddress=%s/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n", ip)
}

func hostsFile(nodes []NodeState, self NodeState) string {
	var b strings.Builder
	fmt.Fprintf(&b, "127.0.0.1\tlocalhost\n127.0.1.1\t%s %s\n", self.Machine, self.Name)
	for _, n := range nodes {
		fmt.Fprintf(&b, "%s\t%s\n", n.IP, n.Name)
	}
	return b.String()
}

// aptSource points apt at the local signed repository: the build's dist/
// directory is bind-mounted read only at /srv/openssi-dist (the directory
// itself, not the repository inside it, which `make repo` recreates).
const aptSource = "deb [signed-by=/usr/share/keyrings/openssi-lab.gpg] file:/srv/openssi-dist/repo/apt stable main\n"
