package lab

import (
	"fmt"
	"strings"

	"github.com/openssi/openssi/internal/consulagent"
)

// The files laid down in every node, the way the Ansible role will.

// consulHCL is the node's Consul agent configuration: the first three nodes
// are servers, the rest clients; all join the servers and use the tuned
// gossip profile.
func consulHCL(n NodeState, servers []string, datacenter string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node_name  = %q\ndatacenter = %q\ndata_dir   = \"/var/lib/consul\"\n", n.Name, datacenter)
	fmt.Fprintf(&b, "bind_addr  = %q\nclient_addr = \"127.0.0.1\"\nlog_level  = \"warn\"\ndisable_update_check = true\nleave_on_terminate = true\n", n.IP)
	quoted := make([]string, len(servers))
	for i, s := range servers {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	fmt.Fprintf(&b, "retry_join = [%s]\nretry_interval = \"1s\"\n", strings.Join(quoted, ", "))
	b.WriteString("ports {\n  dns  = -1\n  grpc = -1\n}\n")
	if n.Server {
		fmt.Fprintf(&b, "server = true\nbootstrap_expect = %d\nconnect {\n  enabled = true\n}\n", len(servers))
		// A lab node that is killed comes back with the same data dir:
		// keep it a Raft voter instead of letting autopilot remove it.
		b.WriteString("autopilot {\n  cleanup_dead_servers = false\n}\n")
	}
	b.WriteString(consulagent.TunedSettings().HCL())
	return b.String()
}

const consulUnit = `[Unit]
Description=Consul agent (OpenSSI lab)
Documentation=https://developer.hashicorp.com/consul
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
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
