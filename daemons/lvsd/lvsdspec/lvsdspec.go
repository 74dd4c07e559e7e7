// Package lvsdspec describes openssi-lvsd, OpenSSI's cluster IP address
// and connection load balancer (the 2004 OpenSSI's HA-LVS with automatic
// port redirection): its name, what it needs, its section of openssi.yaml
// (Config, Default, Validate) and the sandbox of its unit. The daemon's
// main, the registry (internal/daemons) and through it packaging, `ssi
// status` and the test harnesses read it.
package lvsdspec

import (
	_ "embed" // the lvsd section of the shipped openssi.yaml
	"errors"
	"fmt"
	"net/netip"
	"os/user"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openssi/openssi/daemons/clmsd/clmsdspec"
	"github.com/openssi/openssi/daemons/dlmd/dlmdspec"
	"github.com/openssi/openssi/internal/describe"
	"github.com/openssi/openssi/internal/settings"
)

// Name is the daemon's name and the key of its section.
const Name = "lvsd"

// Lockspace and Resource name the director's lock: an EX lock of dlmd in
// a root-only system lockspace. Its holder is the director: it holds the
// VIPs and forwards their connections.
const (
	Lockspace = "openssi.lvsd"
	Resource  = "director"
)

// ServicePrefix starts the Consul service of a registered port, one per
// port: openssi-lvs-tcp-80. Each node that listens on the port registers
// it on its own agent with its address.
const ServicePrefix = "openssi-lvs-"

// KVPorts is the prefix, under openssi/, of the ports registered with
// `ssi vip port add` (key tcp-80, value the port's options).
const KVPorts = "lvs/ports/"

// ReleaseFlag is the one argument of the unit's ExecStopPost, run
// however the daemon ended: it removes the VIPs of openssi.yaml from the
// node's interfaces, so that a director that crashed or was killed
// answers for them no longer (the next director takes them only
// stop_timeout after its lock).
const ReleaseFlag = "--release-vips"

//go:embed openssi.yaml
var example string

// Daemon is openssi-lvsd's description.
var Daemon = describe.Daemon{
	Name:    Name,
	Binary:  "openssi-lvsd",
	Unit:    "openssi-lvsd.service",
	Summary: "one cluster IP address: the director holds the VIP and balances each registered port's connections over the nodes that listen on it",
	About: "openssi-lvsd gives the cluster one IP address (lvsd.vips). The director, elected\n" +
		"with an EX lock of dlmd (lockspace openssi.lvsd), adds the address to its\n" +
		"interface, announces it (gratuitous ARP, unsolicited neighbour advertisement)\n" +
		"and forwards each registered port (lvsd.ports, ssi vip port add) to the nodes\n" +
		"that listen on it: every node's lvsd watches its listening sockets and\n" +
		"registers itself as a backend in Consul's catalog (openssi-lvs-PROTO-PORT)\n" +
		"within a second of listen() or close. Only sockets of root and of the port's\n" +
		"users (lvsd.ports[].users, ssi vip port add --user) count: another local\n" +
		"user listening on the port does not draw its clients. Weighted\n" +
		"least-connections, the weights from vprocd's load vectors, optional source-IP\n" +
		"affinity. IPVS when the kernel has it, else a user-space proxy. A node that\n" +
		"dies leaves the pool at its NODEDOWN. `ssi vip` shows the VIPs, the director\n" +
		"and the pool.",
	// Membership from clmsd; the director's lock from dlmd.
	Needs:     []string{clmsdspec.Name, dlmdspec.Name},
	Config:    settings.NewSection(Name, Default, example),
	Hardening: hardening,
}

var hardening = describe.Hardening{
	// Root for the root-only lockspace of the director's lock; as
	// initfailover, CAP_DAC_OVERRIDE opens the Consul agent's socket and
	// /run/openssi. CAP_NET_ADMIN adds and removes the VIP and programs
	// IPVS, CAP_NET_RAW sends the gratuitous ARP and neighbour
	// advertisements, CAP_NET_BIND_SERVICE binds the registered ports
	// below 1024 on the VIP.
	Capabilities:    []string{"CAP_DAC_OVERRIDE", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"},
	AddressFamilies: []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"},
	// Whatever ended the daemon, the VIPs leave the interfaces at once.
	Set: []describe.Directive{{Key: "ExecStopPost", Value: "-/usr/sbin/openssi-lvsd " + ReleaseFlag}},
	Why: "Runs as root: the director's lock lives in a root-only lockspace of dlmd. CAP_NET_ADMIN adds and removes the VIP " +
		"and programs IPVS over netlink (AF_NETLINK, also sock_diag for the listening sockets), CAP_NET_RAW sends gratuitous ARP " +
		"(AF_PACKET) and neighbour advertisements, CAP_NET_BIND_SERVICE binds registered ports below 1024 on the VIP, " +
		"CAP_DAC_OVERRIDE opens the Consul agent's socket and /run/openssi. Clients and backends over TCP and UDP, ssi on its socket.",
	// Measured with systemd-analyze security --offline=true (systemd
	// 252) on the generated unit.
	Exposure: 2.6,
	User:     "",
	Limits: describe.Limits{
		MemoryMaxMiB: 512,
		TasksMax:     512,
		NOFILE:       65536,
		Why:          "512 MiB and 512 threads: the proxy's goroutines and buffers; 65536 descriptors: up to six per proxied connection (client, backend, a splice pipe each way). The proxies share one budget of connections and UDP flows sized to half of each limit (4096, flows a quarter of it; daemons/lvsd/proxy.BudgetFor).",
	},
}

// Forwarding modes (Config.Forwarding).
const (
	ForwardAuto   = "auto"
	ForwardProxy  = "proxy"
	ForwardIPVSDR = "ipvs-dr"
	ForwardIPVSNA = "ipvs-nat"
)

// Schedulers and affinities of a port.
const (
	SchedulerWLC   = "wlc"
	AffinityNone   = "none"
	AffinitySource = "source"
)

// Config holds the settings of openssi-lvsd (YAML `lvsd:`).
type Config struct {
	// VIPs are the cluster's addresses, held by the director. At most
	// MaxVIPs. Default none.
	VIPs []VIP `mapstructure:"vips" want:"a list of {address: ADDR/PREFIX, interface: NAME}"`
	// Ports are the registered ports. At most MaxPorts. Default none.
	Ports []PortConfig `mapstructure:"ports" want:"a list of {port: tcp/N or udp/N, proxy_protocol, scheduler, affinity, affinity_timeout, users}"`
	// Forwarding: auto, proxy, ipvs-dr or ipvs-nat. Default auto. auto
	// and proxy are the user-space proxy on the director. ipvs-dr and
	// ipvs-nat are opt-ins, forwarding in the kernel's IPVS (the
	// director's kernel must have it: lvsd exits 2 otherwise), untested
	// on this project's machines (none has IPVS): with ipvs-dr every
	// backend must hold the VIP on a non-ARP interface (lo, arp_ignore=1,
	// arp_announce=2), with ipvs-nat every backend must route its replies
	// to clients through the director (its default route); lvsd sets up
	// neither.
	Forwarding string `mapstructure:"forwarding" want:"auto, proxy, ipvs-dr or ipvs-nat"`
	// StopTimeout is how long the director role gets to stop, as
	// initfailover.stop_timeout. 100ms..1m. Default 500ms.
	StopTimeout time.Duration `mapstructure:"stop_timeout" want:"a duration 100ms..1m such as 500ms"`
	// WatchEvery is how often the node's listening sockets are looked
	// at. 50ms..1s. Default 200ms.
	WatchEvery time.Duration `mapstructure:"watch_every" want:"a duration 50ms..1s such as 200ms"`
}

// VIP is one cluster address: address/prefix on an interface.
type VIP struct {
	Address   string `mapstructure:"address"`
	Interface string `mapstructure:"interface"`
}

// PortConfig is one registered port as written in openssi.yaml.
type PortConfig struct {
	// Port is "tcp/N" or "udp/N", N 1..65535.
	Port string `mapstructure:"port"`
	// ProxyProtocol sends a PROXY protocol v2 header to the backend.
	ProxyProtocol bool `mapstructure:"proxy_protocol"`
	// Scheduler is "wlc" (or "", the same).
	Scheduler string `mapstructure:"scheduler"`
	// Affinity is "none" (or "") or "source".
	Affinity string `mapstructure:"affinity"`
	// AffinityTimeout is how long a client stays on its backend after
	// its last connection ends, with affinity source. 1s..24h; 0 means
	// DefaultAffinityTimeout.
	AffinityTimeout time.Duration `mapstructure:"affinity_timeout"`
	// Users are the users, besides root, whose listening sockets put
	// this node into the port's pool: user names or uids, at most
	// MaxUsers. A socket of any other user does not count, so that a
	// local user cannot draw the port's clients to a server of their
	// own. The names are resolved when lvsd starts.
	Users []string `mapstructure:"users"`
}

// Limits of the section.
const (
	MaxVIPs                = 16
	MaxPorts               = 256
	MaxUsers               = 32
	DefaultAffinityTimeout = 5 * time.Minute
)

// Default returns lvsd's settings when nothing overrides them.
func Default() Config {
	return Config{VIPs: []VIP{}, Ports: []PortConfig{}, Forwarding: ForwardAuto, StopTimeout: 500 * time.Millisecond, WatchEvery: 200 * time.Millisecond}
}

// Validate returns the first setting that is not allowed as a
// *settings.Error, or nil. It checks what can be checked without the
// node: that an interface exists and holds the VIP's subnet is checked at
// start (daemons/lvsd/vip).
func (c *Config) Validate() error {
	if err := settings.Checks(Name, c,
		settings.Check{Key: "vips", Value: strconv.Itoa(len(c.VIPs)) + " entries", OK: len(c.VIPs) <= MaxVIPs},
		settings.Check{Key: "ports", Value: strconv.Itoa(len(c.Ports)) + " entries", OK: len(c.Ports) <= MaxPorts},
		settings.Check{Key: "forwarding", Value: c.Forwarding, OK: c.Forwarding == ForwardAuto || c.Forwarding == ForwardProxy ||
			c.Forwarding == ForwardIPVSDR || c.Forwarding == ForwardIPVSNA},
		settings.Check{Key: "stop_timeout", Value: c.StopTimeout.String(), OK: c.StopTimeout >= 100*time.Millisecond && c.StopTimeout <= time.Minute},
		settings.Check{Key: "watch_every", Value: c.WatchEvery.String(), OK: c.WatchEvery >= 50*time.Millisecond && c.WatchEvery <= time.Second},
	); err != nil {
		return err
	}
	seen := map[netip.Addr]int{}
	for i, v := range c.VIPs {
		key := fmt.Sprintf("%s.vips[%d]", Name, i)
		p, err := ParseVIP(v.Address)
		if err != nil {
			return settings.NewError(key+".address", v.Address, "want an IPv4 or IPv6 address with its prefix length, such as 192.168.10.100/24")
		}
		if !ValidInterfaceName(v.Interface) {
			return settings.NewError(key+".interface", v.Interface, "want a network interface name (1-15 characters, no '/', ':' or space)")
		}
		if j, ok := seen[p.Addr()]; ok {
			return settings.NewError(key+".address", v.Address, fmt.Sprintf("want each address once (also vips[%d])", j))
		}
		seen[p.Addr()] = i
	}
	byNum := map[uint16]int{}
	for i, pc := range c.Ports {
		key := fmt.Sprintf("%s.ports[%d]", Name, i)
		p, err := ParsePort(pc.Port)
		if err != nil {
			return settings.NewError(key+".port", pc.Port, "want tcp/N or udp/N, N 1..65535")
		}
		if j, ok := byNum[p.Num]; ok {
			other, _ := ParsePort(c.Ports[j].Port)
			if other.Proto != p.Proto {
				return settings.NewError(key+".port", pc.Port, fmt.Sprintf("want one protocol per port: ports[%d] registers %s", j, other))
			}
			return settings.NewError(key+".port", pc.Port, fmt.Sprintf("want each port once (also ports[%d])", j))
		}
		byNum[p.Num] = i
		o, err := pc.Options()
		if err != nil {
			var se *settings.Error
			if errors.As(err, &se) {
				return settings.NewError(key+"."+se.Key, se.Value, se.Allowed)
			}
			return err
		}
		if o.ProxyProtocol && (c.Forwarding == ForwardIPVSDR || c.Forwarding == ForwardIPVSNA) {
			return settings.NewError(key+".proxy_protocol", "true", "want false with forwarding "+c.Forwarding+" (IPVS sends no PROXY header)")
		}
	}
	return nil
}

// ParseVIP parses address/prefix: a host address (not the network's
// unspecified, multicast or loopback address) and its prefix length.
func ParseVIP(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("lvsdspec: %w", err)
	}
	a := p.Addr()
	if a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a.IsLinkLocalUnicast() {
		return netip.Prefix{}, fmt.Errorf("lvsdspec: %s: not a unicast address for a cluster", s)
	}
	if a.Is4In6() {
		return netip.Prefix{}, fmt.Errorf("lvsdspec: %s: an IPv4-mapped IPv6 address", s)
	}
	return p, nil
}

// ValidInterfaceName reports whether name may name a Linux network
// interface: 1..15 bytes, no '/', ':', space or control character.
func ValidInterfaceName(name string) bool {
	if name == "" || len(name) > 15 || name == "." || name == ".." {
		return false
	}
	for _, r := range name {
		if r <= ' ' || r == '/' || r == ':' || r >= 0x7f {
			return false
		}
	}
	return true
}

// Port is a transport protocol and a port number.
type Port struct {
	// Proto is "tcp" or "udp".
	Proto string
	Num   uint16
}

func (p Port) String() string { return p.Proto + "/" + strconv.Itoa(int(p.Num)) }

// Service is the Consul service of the port: openssi-lvs-tcp-80.
func (p Port) Service() string { return ServicePrefix + p.Proto + "-" + strconv.Itoa(int(p.Num)) }

// Key is the port's key under KVPorts: tcp-80.
func (p Port) Key() string { return p.Proto + "-" + strconv.Itoa(int(p.Num)) }

// ParsePort parses "tcp/80" or "udp/53".
func ParsePort(s string) (Port, error) {
	proto, num, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok || (proto != "tcp" && proto != "udp") {
		return Port{}, fmt.Errorf("lvsdspec: port %q: want tcp/N or udp/N", s)
	}
	n, err := strconv.Atoi(num)
	if err != nil || !settings.IsPort(n) || strconv.Itoa(n) != num {
		return Port{}, fmt.Errorf("lvsdspec: port %q: want a number 1..65535 after the protocol", s)
	}
	return Port{Proto: proto, Num: uint16(n)}, nil
}

// PortFromService is the inverse of Port.Service.
func PortFromService(name string) (Port, bool) {
	rest, ok := strings.CutPrefix(name, ServicePrefix)
	if !ok {
		return Port{}, false
	}
	proto, num, ok := strings.Cut(rest, "-")
	if !ok {
		return Port{}, false
	}
	p, err := ParsePort(proto + "/" + num)
	return p, err == nil
}

// Options are a registered port's settled options.
type Options struct {
	Port          Port
	ProxyProtocol bool
	// Affinity is true for source-IP affinity, kept AffinityTimeout
	// after the client's last connection.
	Affinity        bool
	AffinityTimeout time.Duration
	// Users are the port's users as written (names or uids), UIDs the
	// same resolved on this node: the owners, besides root, whose
	// listening sockets count.
	Users []string
	UIDs  []uint32
}

// Equal says whether o and q are the same options.
func (o Options) Equal(q Options) bool {
	return o.SameForwarding(q) && slices.Equal(o.Users, q.Users) && slices.Equal(o.UIDs, q.UIDs)
}

// SameForwarding says whether o and q forward alike: they may differ in
// their users only, which matter to the watch of listening sockets, not
// to the director's proxy.
func (o Options) SameForwarding(q Options) bool {
	return o.Port == q.Port && o.ProxyProtocol == q.ProxyProtocol && o.Affinity == q.Affinity && o.AffinityTimeout == q.AffinityTimeout
}

// Options checks the port's settings and settles their defaults; the
// error is a *settings.Error whose Key is the field's. A user that is not
// known on this node is an error (key users).
func (pc PortConfig) Options() (Options, error) {
	o, unknown, err := pc.options()
	if err != nil {
		return Options{}, err
	}
	if len(unknown) > 0 {
		return Options{}, settings.NewError("users", unknown[0], "want a user name known on this node, or a uid")
	}
	return o, nil
}

// OptionsKnownUsers is Options where a user not known on this node is
// left out (its sockets do not count here) and returned in unknown: a
// port registered with ssi vip port add on another node stays a port
// here.
func (pc PortConfig) OptionsKnownUsers() (o Options, unknown []string, err error) {
	return pc.options()
}

func (pc PortConfig) options() (Options, []string, error) {
	o, err := pc.checked()
	if err != nil {
		return Options{}, nil, err
	}
	if len(pc.Users) > MaxUsers {
		return Options{}, nil, settings.NewError("users", strconv.Itoa(len(pc.Users))+" entries", fmt.Sprintf("want at most %d users", MaxUsers))
	}
	var unknown []string
	for _, u := range pc.Users {
		u = strings.TrimSpace(u)
		uid, known, ok := resolveUser(u)
		if !ok {
			return Options{}, nil, settings.NewError("users", u, "want a user name or a uid 0..4294967294")
		}
		o.Users = append(o.Users, u)
		if !known {
			unknown = append(unknown, u)
			continue
		}
		if !slices.Contains(o.UIDs, uid) {
			o.UIDs = append(o.UIDs, uid)
		}
	}
	return o, unknown, nil
}

// userRE is what a user name may be (as useradd allows, and more).
var userRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$`)

// LookupUser returns the uid of a user name on this node; tests replace
// it.
var LookupUser = func(name string) (uint32, bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(n), err == nil
}

// resolveUser parses a uid or looks a user name up: ok false when s is
// neither, known false when it is a name this node does not know.
func resolveUser(s string) (uid uint32, known, ok bool) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), true, n != 1<<32-1 // (uid_t)-1 is no uid
	}
	if !userRE.MatchString(s) {
		return 0, false, false
	}
	uid, known = LookupUser(s)
	return uid, known, true
}

// checked checks the settings but the users.
func (pc PortConfig) checked() (Options, error) {
	p, err := ParsePort(pc.Port)
	if err != nil {
		return Options{}, settings.NewError("port", pc.Port, "want tcp/N or udp/N, N 1..65535")
	}
	if pc.Scheduler != "" && pc.Scheduler != SchedulerWLC {
		return Options{}, settings.NewError("scheduler", pc.Scheduler, "want wlc (weighted least-connections)")
	}
	o := Options{Port: p, ProxyProtocol: pc.ProxyProtocol}
	switch pc.Affinity {
	case "", AffinityNone:
	case AffinitySource:
		o.Affinity = true
	default:
		return Options{}, settings.NewError("affinity", pc.Affinity, "want none or source")
	}
	switch {
	case pc.AffinityTimeout == 0:
		if o.Affinity {
			o.AffinityTimeout = DefaultAffinityTimeout
		}
	case !o.Affinity:
		return Options{}, settings.NewError("affinity_timeout", pc.AffinityTimeout.String(), "want it only with affinity: source")
	case pc.AffinityTimeout < time.Second || pc.AffinityTimeout > 24*time.Hour:
		return Options{}, settings.NewError("affinity_timeout", pc.AffinityTimeout.String(), "want a duration 1s..24h such as 5m")
	default:
		o.AffinityTimeout = pc.AffinityTimeout
	}
	if p.Proto == "udp" && pc.ProxyProtocol {
		return Options{}, settings.NewError("proxy_protocol", "true", "want false for udp (the PROXY header is for TCP streams here)")
	}
	return o, nil
}

// Prefixes returns the VIPs parsed; call it on a validated Config.
func (c *Config) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(c.VIPs))
	for _, v := range c.VIPs {
		if p, err := ParseVIP(v.Address); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// PortOptions returns the ports' options; call it on a validated Config.
func (c *Config) PortOptions() []Options {
	out := make([]Options, 0, len(c.Ports))
	for _, pc := range c.Ports {
		if o, err := pc.Options(); err == nil {
			out = append(out, o)
		}
	}
	return out
}

// From returns lvsd's section of a loaded configuration.
func From(c interface{ Section(name string) any }) Config {
	return settings.Of[Config](c, Name)
}
