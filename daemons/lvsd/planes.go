// This file wires daemons/lvsd/vip, proxy, sockwatch and ipvs into the
// server's interfaces.

package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	cf "github.com/cloudflare/ipvs"
	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/daemons/lvsd/ipvs"
	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/daemons/lvsd/pool"
	"github.com/openssi/openssi/daemons/lvsd/proxy"
	"github.com/openssi/openssi/daemons/lvsd/server"
	"github.com/openssi/openssi/daemons/lvsd/sockwatch"
	"github.com/openssi/openssi/daemons/lvsd/vip"
	"github.com/openssi/openssi/internal/daemon"
)

// thePlanes is what the server drives: the VIPs, the forwarding and the
// watch of listening sockets, with the start-up check of each VIP.
type thePlanes struct {
	check func(ifname string, vip netip.Prefix) error
	vip   server.VIPs
	data  server.DataPlane
	watch server.WatchListening
	// ipvs: the kernel forwards (no PROXY protocol).
	ipvs bool
}

// planes builds the VIPs' plane and the data plane: the kernel's IPVS
// when forwarding asks for it (ipvs-dr, ipvs-nat), else the user-space
// proxy.
func planes(own lvsdspec.Config, vips []server.VIP, log logrus.FieldLogger) (thePlanes, error) {
	addrs := make([]netip.Addr, 0, len(vips))
	for _, v := range vips {
		addrs = append(addrs, v.Prefix.Addr())
	}
	var data server.DataPlane = &proxyPlane{log: log, proxies: map[forwarded]*served{}, budget: proxy.NewBudget(proxyLimits())}
	useIPVS, err := chooseForwarding(own.Forwarding, ipvs.Available)
	if err != nil {
		return thePlanes{}, err
	}
	if useIPVS {
		c, err := cf.New()
		if err != nil {
			return thePlanes{}, fmt.Errorf("lvsd: IPVS: %w", err)
		}
		method := ipvs.NAT
		if own.Forwarding == lvsdspec.ForwardIPVSDR {
			method = ipvs.DirectRouting
		}
		log.WithField("method", method.String()).Info("forwarding with the kernel's IPVS")
		data = &ipvsPlane{c: c, method: method, vips: addrs, log: log, services: map[forwarded]ipvs.VirtualService{}}
	}
	return thePlanes{
		check: vip.Check,
		vip:   vipPlane{},
		data:  data,
		ipvs:  useIPVS,
		watch: func(ctx context.Context, want func() []lvsdspec.Options, every time.Duration, changed func(map[lvsdspec.Port]bool)) error {
			// The director's own proxies listen on the VIPs: those
			// sockets make no backend. Only sockets of root and of
			// the port's users count.
			return sockwatch.WatchExcept(ctx,
				func() []sockwatch.Want {
					w := want()
					out := make([]sockwatch.Want, len(w))
					for i, o := range w {
						out[i] = sockwatch.Want{Port: sockwatch.Port{Proto: o.Port.Proto, Num: o.Port.Num}, UIDs: o.UIDs}
					}
					return out
				},
				func() []netip.Addr { return addrs },
				every,
				func(m map[sockwatch.Port]bool) {
					out := make(map[lvsdspec.Port]bool, len(m))
					for p, on := range m {
						out[lvsdspec.Port{Proto: p.Proto, Num: p.Num}] = on
					}
					changed(out)
				})
		},
	}, nil
}

// chooseForwarding reports whether forwarding asks for the kernel's
// IPVS (available says whether the kernel has it). auto is the
// user-space proxy, whatever the kernel has: IPVS-NAT needs every
// backend to route its replies through the director and direct routing
// the VIP on every backend, which nothing here sets up, and neither is
// tested on this project's machines (none has IPVS): both are explicit
// opt-ins.
//
// IPVS asked for on a kernel without it is a configuration error (exit
// 2, one line naming lvsd.forwarding), not a failure systemd would
// restart the daemon after, for ever.
func chooseForwarding(forwarding string, available func() (bool, error)) (bool, error) {
	switch forwarding {
	case lvsdspec.ForwardIPVSDR, lvsdspec.ForwardIPVSNA:
	default:
		return false, nil
	}
	ok, err := available()
	switch {
	case err != nil:
		return false, daemon.ConfigError{Err: fmt.Errorf("config: %s.forwarding: %q needs the kernel's IPVS, and whether this kernel has it cannot be told (%v): want auto or proxy here", lvsdspec.Name, forwarding, err)}
	case !ok:
		return false, daemon.ConfigError{Err: fmt.Errorf("config: %s.forwarding: %q needs the kernel's IPVS, which this kernel lacks (modprobe ip_vs): want auto or proxy here", lvsdspec.Name, forwarding)}
	}
	return true, nil
}

// vipPlane is server.VIPs with package vip.
type vipPlane struct{}

func (vipPlane) Add(ifname string, p netip.Prefix) error    { return vip.Add(ifname, p) }
func (vipPlane) Remove(ifname string, p netip.Prefix) error { return vip.Remove(ifname, p) }
func (vipPlane) Announce(ifname string, a netip.Addr) error { return vip.Announce(ifname, a) }

// forwarded is one served address: a VIP and port number, for one
// protocol (tcp/N and udp/N are two sockets).
type forwarded struct {
	proto string
	addr  netip.AddrPort
}

// proxyLimits size the one budget of every proxy of the daemon from its
// unit's LimitNOFILE and MemoryMax.
func proxyLimits() proxy.Limits {
	l := lvsdspec.Daemon.Hardening.Limits
	return proxy.BudgetFor(l.NOFILE, l.MemoryMaxMiB)
}

// proxyPlane is server.DataPlane with the user-space proxy: one proxy
// per VIP, port and protocol, each serving in a goroutine joined by its
// Stop, all of them sharing one budget of connections and flows.
type proxyPlane struct {
	log     logrus.FieldLogger
	budget  *proxy.Budget
	mu      sync.Mutex
	proxies map[forwarded]*served
}

type served struct {
	p    proxy.Proxy
	done chan struct{}
}

func (pp *proxyPlane) Serve(addr netip.AddrPort, o lvsdspec.Options, pick server.Picker) error {
	p, err := proxy.Listen(o.Port.Proto, addr, pick, proxy.Options{ProxyProtocol: o.ProxyProtocol, Budget: pp.budget, Log: pp.log})
	if err != nil {
		return err
	}
	s := &served{p: p, done: make(chan struct{})}
	pp.mu.Lock()
	pp.proxies[forwarded{proto: o.Port.Proto, addr: addr}] = s
	pp.mu.Unlock()
	go func() {
		defer close(s.done)
		if err := p.Serve(); err != nil {
			pp.log.WithError(err).WithField("addr", o.Port.Proto+" "+addr.String()).Warn("proxy stopped")
		}
	}()
	return nil
}

func (pp *proxyPlane) Stop(addr netip.AddrPort, proto string) error {
	pp.mu.Lock()
	k := forwarded{proto: proto, addr: addr}
	s, ok := pp.proxies[k]
	delete(pp.proxies, k)
	pp.mu.Unlock()
	if !ok {
		return nil
	}
	err := s.p.Close()
	<-s.done
	return err
}

func (pp *proxyPlane) DropBackend(b netip.AddrPort) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	for _, s := range pp.proxies {
		s.p.DropBackend(b)
	}
}

// ipvsPlane is server.DataPlane with the kernel's IPVS (untested: no
// kernel here has IPVS): each served address is a virtual service, its
// destinations the backends the server sets; every change syncs the
// whole table of the VIPs.
type ipvsPlane struct {
	c      cf.Client
	method ipvs.Method
	vips   []netip.Addr
	log    logrus.FieldLogger

	mu       sync.Mutex
	services map[forwarded]ipvs.VirtualService
}

var _ server.BackendSetter = (*ipvsPlane)(nil)

func (p *ipvsPlane) Serve(addr netip.AddrPort, o lvsdspec.Options, _ server.Picker) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	vs := ipvs.VirtualService{VIP: addr.Addr(), Proto: o.Port.Proto, Port: addr.Port(), Method: p.method}
	if o.Affinity {
		vs.Affinity = o.AffinityTimeout
	}
	k := forwarded{proto: o.Port.Proto, addr: addr}
	if old, ok := p.services[k]; ok {
		vs.Backends = old.Backends
	}
	p.services[k] = vs
	return p.syncLocked()
}

func (p *ipvsPlane) Stop(addr netip.AddrPort, proto string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.services, forwarded{proto: proto, addr: addr})
	return p.syncLocked()
}

// DropBackend: the next SetBackends removes the destination; the
// kernel's connections to it end by its own timeouts.
func (p *ipvsPlane) DropBackend(netip.AddrPort) {}

func (p *ipvsPlane) SetBackends(addr netip.AddrPort, o lvsdspec.Options, bs []pool.BackendView) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := forwarded{proto: o.Port.Proto, addr: addr}
	vs, ok := p.services[k]
	if !ok {
		return
	}
	vs.Backends = vs.Backends[:0:0]
	for _, b := range bs {
		vs.Backends = append(vs.Backends, ipvs.Backend{Addr: b.Addr.Addr(), Weight: uint32(b.Weight)})
	}
	p.services[k] = vs
	if err := p.syncLocked(); err != nil {
		p.log.WithError(err).WithField("addr", addr.String()).Warn("programming IPVS")
	}
}

func (p *ipvsPlane) syncLocked() error {
	keys := make([]forwarded, 0, len(p.services))
	for k := range p.services {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b forwarded) int {
		if c := a.addr.Compare(b.addr); c != 0 {
			return c
		}
		return strings.Compare(a.proto, b.proto)
	})
	vss := make([]ipvs.VirtualService, 0, len(keys))
	for _, a := range keys {
		vss = append(vss, p.services[a])
	}
	entries, err := ipvs.Translate(vss)
	if err != nil {
		return err
	}
	return ipvs.Sync(p.c, p.vips, entries)
}
