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
// lvsd is both (lvsd.go): a proxySide that registers servicePort with
// lvsd and makes director lvsd's director, and a failoverSide of lvsd on
// every node whose port is servicePort (lvsd's proxy on the VIP).
var (
	proxySides    = map[string]proxySide{"haproxy": haproxySide{}, "lvsd": lvsdSide{}}
	failoverSides = map[string]failoverSide{"keepalived": keepalivedSide{}, "lvsd": lvsdFailover{}}
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
	return slices.Compact(out)
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
// for the VIP with advert_int 1 and otherwise its defaults (preemption
// on, gratuitous ARPs at takeover and again 5 s later), every node
// starting as BACKUP with a priority of its own: 150, 100, 50 for node1,
// node2, node3, as keepalived's examples give each router its own. With
// one priority for all (the default 100), two backups time out together,
// both take the address, and the one with the lower address steps down
// after the host may already have learnt its MAC: a first run had 2 of
// 10 failovers at 8.4 and 8.7 s, until the next gratuitous ARP 5 s later.
// The side moves the address only, so the probe connects to anyPort,
// where every node's backend listens on all addresses.
type keepalivedSide struct{}

func (keepalivedSide) name() string { return "keepalived" }
func (keepalivedSide) label() string {
	return "keepalived (Debian bookworm's), VRRP, advert_int 1, a priority per node, otherwise its defaults"
}
func (keepalivedSide) port() int { return anyPort }

// keepalivedPriority is node i's priority (i from 1): 150, 100, 50.
func keepalivedPriority(i int) int { return 200 - 50*i }

// keepalivedConf is a node's configuration.
func keepalivedConf(node, iface, vip string, priority int) string {
	return fmt.Sprintf(`# bench/lvs: keepalived holding the VIP, the peer of lvsd's director election
global_defs {
	router_id %s
}

vrrp_instance bench_lvs {
	state BACKUP
	interface %s
	virtual_router_id 14
	priority %d
	advert_int 1
	virtual_ipaddress {
		%s dev %s
	}
}
`, node, iface, priority, vip, iface)
}

func (keepalivedSide) start(ctx context.Context, b *bench) error {
	for i, n := range b.names {
		conf := keepalivedConf(n, "host0", b.vip.String(), keepalivedPriority(i+1))
		if err := b.write(n, file{"/etc/keepalived/keepalived.conf", []byte(conf), 0o644}); err != nil {
			return err
		}
		if err := b.enableOnDisk(n, "keepalived.service"); err != nil {
			return err
		}
	}
	b.notes = append(b.notes, fmt.Sprintf("keepalived.conf on node2 (node1's and node3's differ in router_id and priority: %d and %d):\n\n```\n%s```\n",
		keepalivedPriority(1), keepalivedPriority(3), keepalivedConf("node2", "host0", b.vip.String(), keepalivedPriority(2))))
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
