package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// proxySide forwards the VIP's servicePort to every node's backend from
// one director: a proxy of the throughput runs.
type proxySide interface {
	name() string
	label() string
	// start puts the VIP on director and forwards VIP:servicePort to
	// every node's address at servicePort; it returns once the side is
	// started (the bench then waits for the VIP to answer).
	start(ctx context.Context, b *bench, director string) error
	// stop undoes start: the VIP off director, the forwarder stopped.
	stop(ctx context.Context, b *bench, director string) error
}

// failoverSide holds the VIP on exactly one node and moves it when that
// node dies.
type failoverSide interface {
	name() string
	label() string
	// start runs the side on every node, and at every node's boot (a
	// killed node comes back with it).
	start(ctx context.Context, b *bench) error
	// ready says why the side is not ready for a kill ("" when it is),
	// beyond one node holding the VIP and the VIP answering.
	ready(ctx context.Context, b *bench) string
	// port is where the host's probe connects on the VIP.
	port() int
	stop(ctx context.Context, b *bench) error
}

// proxySides and failoverSides are every side the bench knows, by name.
// lvsd's sides are added here when lvsd exists: a proxySide that
// registers servicePort with lvsd and makes director lvsd's director, and
// a failoverSide of lvsd on every node whose port is servicePort (lvsd's
// proxy on the VIP).
var (
	proxySides    = map[string]proxySide{"haproxy": haproxySide{}}
	failoverSides = map[string]failoverSide{"keepalived": keepalivedSide{}}
)

func sideNames() []string {
	var out []string
	for n := range proxySides {
		out = append(out, n)
	}
	for n := range failoverSides {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// pick splits the -sides names into proxies and failovers, in the order
// given.
func pick(names []string) ([]proxySide, []failoverSide, error) {
	var ps []proxySide
	var fs []failoverSide
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		p, isProxy := proxySides[n]
		f, isFailover := failoverSides[n]
		if !isProxy && !isFailover {
			return nil, nil, fmt.Errorf("-sides: no side %q (known: %s)", n, strings.Join(sideNames(), ", "))
		}
		if isProxy {
			ps = append(ps, p)
		}
		if isFailover {
			fs = append(fs, f)
		}
	}
	if len(ps) == 0 && len(fs) == 0 {
		return nil, nil, fmt.Errorf("-sides: nothing to measure")
	}
	return ps, fs, nil
}

// haproxySide is Debian's HAProxy on the director, in TCP mode as lvsd's
// proxy is (a layer-4 forwarder: the same job), balancing by least
// connections, with a health check every second.
type haproxySide struct{}

func (haproxySide) name() string { return "haproxy" }
func (haproxySide) label() string {
	return "HAProxy (Debian bookworm's), TCP mode, leastconn, on node1"
}

// haproxyConf is the whole configuration: Debian's global section (less
// the chroot and the stats socket, which nothing here reads) and one
// frontend on vip:port to one backend of servers.
func haproxyConf(vip string, port int, servers map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# bench/lvs: HAProxy as the VIP's proxy, the peer of lvsd's proxy
global
	log /dev/log local0 warning
	user haproxy
	group haproxy
	daemon
	maxconn 4096

defaults
	log global
	mode tcp
	option dontlognull
	timeout connect 1s
	timeout client 1m
	timeout server 1m

frontend vip
	bind %s:%d
	default_backend nodes

backend nodes
	balance leastconn
`, vip, port)
	names := make([]string, 0, len(servers))
	for n := range servers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&b, "\tserver %s %s:%d check inter 1s fall 1 rise 1\n", n, servers[n], port)
	}
	return b.String()
}

func (haproxySide) start(ctx context.Context, b *bench, director string) error {
	conf := haproxyConf(b.vip.Addr().String(), servicePort, b.ip)
	if err := b.write(director, file{"/etc/haproxy/haproxy.cfg", []byte(conf), 0o644}); err != nil {
		return err
	}
	script := fmt.Sprintf("ip addr replace %s dev %s && haproxy -c -q -f /etc/haproxy/haproxy.cfg && systemctl restart haproxy", b.vip, "host0")
	if out, err := b.l.Exec(ctx, director, "sh", "-ec", script); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func (haproxySide) stop(ctx context.Context, b *bench, director string) error {
	script := fmt.Sprintf("systemctl stop haproxy; ip addr del %s dev %s || true", b.vip, "host0")
	if out, err := b.l.Exec(ctx, director, "sh", "-ec", script); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// keepalivedSide is Debian's keepalived on every node, one VRRP instance
// for the VIP with advert_int 1 and otherwise its defaults: every node
// BACKUP at the default priority 100 (the highest address wins a tie),
// preemption on. It moves the address only, so the probe connects to
// anyPort, where every node's backend listens on all addresses.
type keepalivedSide struct{}

func (keepalivedSide) name() string { return "keepalived" }
func (keepalivedSide) label() string {
	return "keepalived (Debian bookworm's), VRRP, advert_int 1, its defaults"
}
func (keepalivedSide) port() int { return anyPort }

// keepalivedConf is a node's configuration.
func keepalivedConf(node, iface, vip string) string {
	return fmt.Sprintf(`# bench/lvs: keepalived holding the VIP, the peer of lvsd's director election
global_defs {
	router_id %s
}

vrrp_instance bench_lvs {
	state BACKUP
	interface %s
	virtual_router_id 14
	advert_int 1
	virtual_ipaddress {
		%s dev %s
	}
}
`, node, iface, vip, iface)
}

func (keepalivedSide) start(ctx context.Context, b *bench) error {
	for _, n := range b.names {
		if err := b.write(n, file{"/etc/keepalived/keepalived.conf", []byte(keepalivedConf(n, "host0", b.vip.String())), 0o644}); err != nil {
			return err
		}
		if err := b.enableOnDisk(n, "keepalived.service"); err != nil {
			return err
		}
	}
	b.notes = append(b.notes, "keepalived.conf on node1:\n\n```\n"+keepalivedConf("node1", "host0", b.vip.String())+"```\n")
	return b.onEvery(ctx, "systemctl start keepalived")
}

func (keepalivedSide) ready(ctx context.Context, b *bench) string {
	for _, n := range b.names {
		if out, err := b.l.Exec(ctx, n, "systemctl", "is-active", "keepalived"); err != nil {
			return fmt.Sprintf("keepalived on %s: %s", n, strings.TrimSpace(out))
		}
	}
	return ""
}

func (keepalivedSide) stop(ctx context.Context, b *bench) error {
	for _, n := range b.names {
		if err := b.disableOnDisk(n, "keepalived.service"); err != nil {
			return err
		}
	}
	return b.onEvery(ctx, "systemctl stop keepalived")
}
