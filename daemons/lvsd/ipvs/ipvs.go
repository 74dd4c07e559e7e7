// Package ipvs is lvsd's kernel data plane where the kernel has IPVS: it
// detects IPVS (Available), translates the director's virtual services and
// their backends into IPVS services and destinations (Translate, pure),
// decides what must change in the kernel's table to reach them (Plan,
// pure, touching only the services of lvsd's VIPs), and carries the plan
// out through github.com/cloudflare/ipvs (Sync).
//
// Where the kernel has no IPVS (Available says false), lvsd forwards with
// its user-space proxy instead.
package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	cf "github.com/cloudflare/ipvs"
	"github.com/cloudflare/ipvs/netmask"
)

// Available reports whether this kernel has IPVS, that is whether its
// generic netlink family resolves (which also loads the ip_vs module when
// the kernel may). An error is neither yes nor no, e.g. EPERM without
// CAP_NET_ADMIN.
func Available() (bool, error) {
	c, err := cf.New()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("ipvs: detect: %w", err)
	}
	if cl, ok := c.(interface{ Close() error }); ok {
		_ = cl.Close()
	}
	return true, nil
}

// Method is how IPVS sends a connection to a backend.
type Method int

const (
	// DirectRouting rewrites only the MAC: the backend, on the VIP's
	// link, answers the client itself from the VIP (which it holds on a
	// non-ARP interface). The backend's port is the VIP's.
	DirectRouting Method = iota
	// NAT rewrites the destination address: replies must come back
	// through the director (its default route).
	NAT
)

func (m Method) String() string {
	switch m {
	case DirectRouting:
		return "direct routing"
	case NAT:
		return "NAT"
	}
	return fmt.Sprintf("Method(%d)", int(m))
}

// Scheduler is IPVS's weighted least-connections scheduler, the one lvsd
// uses everywhere, as its proxy does.
const Scheduler = "wlc"

// MaxWeight is the largest weight a destination gets; larger ones are
// clamped. Weight 0 quiesces a destination: no new connections, the
// established ones carry on.
const MaxWeight = 65535

// Backend is one node serving a virtual service.
type Backend struct {
	Addr   netip.Addr
	Port   uint16 // 0 means the virtual service's port
	Weight uint32
}

// VirtualService is one registered port on one VIP with its backends.
type VirtualService struct {
	VIP   netip.Addr
	Proto string // "tcp" or "udp"
	Port  uint16
	// Method applies to every backend of the service.
	Method Method
	// Affinity, when positive, keeps a client (by source address) on its
	// backend for that long after its last connection (IPVS persistence).
	Affinity time.Duration
	Backends []Backend
}

// Entry is one IPVS service with its destinations, in the order of the
// destinations' addresses.
type Entry struct {
	Service      cf.Service
	Destinations []cf.Destination
}

// Translate turns virtual services into IPVS entries, in the order given.
// It refuses what IPVS cannot do or lvsd never means: an unknown protocol,
// a backend of another family than its VIP, a port remapped under direct
// routing, two services for the same VIP, protocol and port, a backend
// listed twice.
func Translate(vss []VirtualService) ([]Entry, error) {
	out := make([]Entry, 0, len(vss))
	seen := map[serviceKey]bool{}
	for _, vs := range vss {
		e, err := translate(vs)
		if err != nil {
			return nil, err
		}
		k := keyOf(e.Service)
		if seen[k] {
			return nil, fmt.Errorf("ipvs: %s: listed twice", name(vs))
		}
		seen[k] = true
		out = append(out, e)
	}
	return out, nil
}

func name(vs VirtualService) string {
	return fmt.Sprintf("%s/%s", vs.Proto, netip.AddrPortFrom(vs.VIP, vs.Port))
}

func translate(vs VirtualService) (Entry, error) {
	vip := vs.VIP.Unmap()
	if !vip.IsValid() || vip.IsUnspecified() || vs.Port == 0 {
		return Entry{}, fmt.Errorf("ipvs: %s: a virtual service needs an address and a port", name(vs))
	}
	var proto cf.Protocol
	switch vs.Proto {
	case "tcp":
		proto = cf.TCP
	case "udp":
		proto = cf.UDP
	default:
		return Entry{}, fmt.Errorf("ipvs: %s: protocol %q is neither tcp nor udp", name(vs), vs.Proto)
	}
	var fwd cf.ForwardType
	switch vs.Method {
	case DirectRouting:
		fwd = cf.DirectRoute
	case NAT:
		fwd = cf.Masquerade
	default:
		return Entry{}, fmt.Errorf("ipvs: %s: unknown forwarding method %v", name(vs), vs.Method)
	}
	fam, bits := cf.INET, 32
	if vip.Is6() {
		fam, bits = cf.INET6, 128
	}
	svc := cf.Service{
		Address:   vip,
		Netmask:   netmask.MaskFrom(bits, bits),
		Scheduler: Scheduler,
		Port:      vs.Port,
		Family:    fam,
		Protocol:  proto,
	}
	if vs.Affinity > 0 {
		svc.Flags = cf.ServicePersistent
		// IPVS counts persistence in whole seconds; round up so a short
		// affinity is not none.
		svc.Timeout = uint32((vs.Affinity + time.Second - 1) / time.Second)
	}
	e := Entry{Service: svc}
	dup := map[netip.AddrPort]bool{}
	for _, b := range vs.Backends {
		a := b.Addr.Unmap()
		if !a.IsValid() || a.IsUnspecified() {
			return Entry{}, fmt.Errorf("ipvs: %s: a backend without an address", name(vs))
		}
		if a.Is4() != vip.Is4() {
			return Entry{}, fmt.Errorf("ipvs: %s: backend %v is not of the VIP's family", name(vs), a)
		}
		port := b.Port
		if port == 0 {
			port = vs.Port
		}
		if vs.Method == DirectRouting && port != vs.Port {
			return Entry{}, fmt.Errorf("ipvs: %s: backend %v: direct routing cannot change the port", name(vs), netip.AddrPortFrom(a, port))
		}
		ap := netip.AddrPortFrom(a, port)
		if dup[ap] {
			return Entry{}, fmt.Errorf("ipvs: %s: backend %v listed twice", name(vs), ap)
		}
		dup[ap] = true
		e.Destinations = append(e.Destinations, cf.Destination{
			Address:   a,
			Port:      port,
			Family:    fam,
			FwdMethod: fwd,
			Weight:    min(b.Weight, MaxWeight),
		})
	}
	slices.SortFunc(e.Destinations, func(x, y cf.Destination) int {
		return netip.AddrPortFrom(x.Address, x.Port).Compare(netip.AddrPortFrom(y.Address, y.Port))
	})
	return e, nil
}

// serviceKey is what identifies an IPVS service.
type serviceKey struct {
	addr  netip.Addr
	proto cf.Protocol
	port  uint16
}

func keyOf(s cf.Service) serviceKey {
	return serviceKey{s.Address.Unmap(), s.Protocol, s.Port}
}

// OpKind is what an Op does.
type OpKind int

const (
	CreateService OpKind = iota
	UpdateService
	RemoveService
	CreateDestination
	UpdateDestination
	RemoveDestination
)

var opNames = [...]string{"create-service", "update-service", "remove-service", "create-destination", "update-destination", "remove-destination"}

func (k OpKind) String() string {
	if int(k) < len(opNames) {
		return opNames[k]
	}
	return fmt.Sprintf("OpKind(%d)", int(k))
}

// Op is one change to the kernel's table. Destination is set for the
// destination kinds only.
type Op struct {
	Kind        OpKind
	Service     cf.Service
	Destination cf.Destination
}

func (o Op) String() string {
	s := fmt.Sprintf("%s %v/%v", o.Kind, o.Service.Protocol, netip.AddrPortFrom(o.Service.Address, o.Service.Port))
	if o.Kind >= CreateDestination {
		s += fmt.Sprintf(" -> %v %v w%d", netip.AddrPortFrom(o.Destination.Address, o.Destination.Port), o.Destination.FwdMethod, o.Destination.Weight)
	}
	return s
}

// Plan lists the changes that turn current (the kernel's table) into want,
// touching only services whose address is one of vips: other services
// belong to someone else. Within a service, destinations are removed
// before others are created so that a full table never blocks a
// replacement, and a service that goes goes with its destinations.
func Plan(vips []netip.Addr, current, want []Entry) []Op {
	ours := map[netip.Addr]bool{}
	for _, v := range vips {
		ours[v.Unmap()] = true
	}
	cur := map[serviceKey]Entry{}
	for _, e := range current {
		if ours[e.Service.Address.Unmap()] {
			cur[keyOf(e.Service)] = e
		}
	}
	var ops []Op
	wanted := map[serviceKey]bool{}
	for _, w := range want {
		k := keyOf(w.Service)
		wanted[k] = true
		c, ok := cur[k]
		if !ok {
			ops = append(ops, Op{Kind: CreateService, Service: w.Service})
			for _, d := range w.Destinations {
				ops = append(ops, Op{Kind: CreateDestination, Service: w.Service, Destination: d})
			}
			continue
		}
		if !sameService(c.Service, w.Service) {
			ops = append(ops, Op{Kind: UpdateService, Service: w.Service})
		}
		ops = append(ops, planDestinations(w.Service, c.Destinations, w.Destinations)...)
	}
	var gone []Entry
	for k, c := range cur {
		if !wanted[k] {
			gone = append(gone, c)
		}
	}
	slices.SortFunc(gone, func(x, y Entry) int { return compareKey(keyOf(x.Service), keyOf(y.Service)) })
	for _, c := range gone {
		ops = append(ops, Op{Kind: RemoveService, Service: c.Service})
	}
	return ops
}

func compareKey(a, b serviceKey) int {
	if c := a.addr.Compare(b.addr); c != 0 {
		return c
	}
	if a.proto != b.proto {
		return int(a.proto) - int(b.proto)
	}
	return int(a.port) - int(b.port)
}

// sameService compares what lvsd sets; the kernel adds ServiceHashed.
func sameService(a, b cf.Service) bool {
	return a.Scheduler == b.Scheduler &&
		a.Flags&^cf.ServiceHashed == b.Flags&^cf.ServiceHashed &&
		(a.Flags&cf.ServicePersistent == 0 || a.Timeout == b.Timeout) &&
		a.Netmask.Bits() == b.Netmask.Bits()
}

func planDestinations(svc cf.Service, cur, want []cf.Destination) []Op {
	at := func(d cf.Destination) netip.AddrPort { return netip.AddrPortFrom(d.Address.Unmap(), d.Port) }
	have := map[netip.AddrPort]cf.Destination{}
	for _, d := range cur {
		have[at(d)] = d
	}
	keep := map[netip.AddrPort]bool{}
	for _, d := range want {
		keep[at(d)] = true
	}
	var ops []Op
	var gone []cf.Destination
	for _, d := range cur {
		if !keep[at(d)] {
			gone = append(gone, d)
		}
	}
	slices.SortFunc(gone, func(x, y cf.Destination) int { return at(x).Compare(at(y)) })
	for _, d := range gone {
		ops = append(ops, Op{Kind: RemoveDestination, Service: svc, Destination: d})
	}
	for _, d := range want {
		c, ok := have[at(d)]
		switch {
		case !ok:
			ops = append(ops, Op{Kind: CreateDestination, Service: svc, Destination: d})
		case c.Weight != d.Weight || c.FwdMethod != d.FwdMethod:
			ops = append(ops, Op{Kind: UpdateDestination, Service: svc, Destination: d})
		}
	}
	return ops
}

// Sync reads the kernel's table through c, plans the changes to want for
// the services of vips and applies them in order, stopping at the first
// error (the next Sync starts again from what the kernel then has).
func Sync(c cf.Client, vips []netip.Addr, want []Entry) error {
	current, err := Read(c)
	if err != nil {
		return err
	}
	for _, op := range Plan(vips, current, want) {
		if err := apply(c, op); err != nil {
			return fmt.Errorf("ipvs: %v: %w", op, err)
		}
	}
	return nil
}

// Read returns the kernel's table as entries.
func Read(c cf.Client) ([]Entry, error) {
	svcs, err := c.Services()
	if err != nil {
		return nil, fmt.Errorf("ipvs: list services: %w", err)
	}
	out := make([]Entry, 0, len(svcs))
	for _, s := range svcs {
		if s.FWMark != 0 {
			continue // firewall-mark services are never lvsd's
		}
		ds, err := c.Destinations(s.Service)
		if err != nil {
			return nil, fmt.Errorf("ipvs: list destinations of %v: %w", netip.AddrPortFrom(s.Address, s.Port), err)
		}
		e := Entry{Service: s.Service}
		for _, d := range ds {
			e.Destinations = append(e.Destinations, d.Destination)
		}
		out = append(out, e)
	}
	return out, nil
}

func apply(c cf.Client, op Op) error {
	switch op.Kind {
	case CreateService:
		return c.CreateService(op.Service)
	case UpdateService:
		return c.UpdateService(op.Service)
	case RemoveService:
		return c.RemoveService(op.Service)
	case CreateDestination:
		return c.CreateDestination(op.Service, op.Destination)
	case UpdateDestination:
		return c.UpdateDestination(op.Service, op.Destination)
	case RemoveDestination:
		return c.RemoveDestination(op.Service, op.Destination)
	}
	return fmt.Errorf("unknown operation %v", op.Kind)
}

// Describe is a one-line-per-entry rendering of entries, for logs and
// `ssi vip`.
func Describe(es []Entry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%v %v %s", e.Service.Protocol, netip.AddrPortFrom(e.Service.Address, e.Service.Port), e.Service.Scheduler)
		if e.Service.Flags&cf.ServicePersistent != 0 {
			fmt.Fprintf(&b, " persistent %ds", e.Service.Timeout)
		}
		for _, d := range e.Destinations {
			fmt.Fprintf(&b, " -> %v %v w%d", netip.AddrPortFrom(d.Address, d.Port), d.FwdMethod, d.Weight)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
