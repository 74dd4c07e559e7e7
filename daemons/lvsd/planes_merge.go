//go:build ignore

// This file wires daemons/lvsd/vip, proxy and sockwatch, built in
// parallel with this daemon: once they are merged, delete planes.go and
// the build line above.

package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/daemons/lvsd/ipvs"
	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
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

func planes(own lvsdspec.Config, vips []server.VIP, log logrus.FieldLogger) (thePlanes, error) {
	switch own.Forwarding {
	case lvsdspec.ForwardIPVSDR, lvsdspec.ForwardIPVSNA:
		// The translation to IPVS services is daemons/lvsd/ipvs; an
		// IPVS data plane is a server.DataPlane that is also a
		// server.BackendSetter (Translate and Sync on each SetBackends),
		// not written yet.
		return thePlanes{}, daemon.ConfigError{Err: fmt.Errorf("config: %s.forwarding: %q is not supported yet: want auto or proxy", lvsdspec.Name, own.Forwarding)}
	case lvsdspec.ForwardAuto:
		if ok, err := ipvs.Available(); err == nil && ok {
			log.Warn("the kernel has IPVS, but lvsd does not program it yet: forwarding with the user-space proxy")
		}
	}
	addrs := make([]netip.Addr, 0, len(vips))
	for _, v := range vips {
		addrs = append(addrs, v.Prefix.Addr())
	}
	return thePlanes{
		check: vip.Check,
		vip:   vipPlane{},
		data:  &proxyPlane{log: log, proxies: map[netip.AddrPort]*served{}},
		watch: func(ctx context.Context, want func() []lvsdspec.Port, every time.Duration, changed func(map[lvsdspec.Port]bool)) error {
			// The director's own proxies listen on the VIPs: those
			// sockets make no backend.
			return sockwatch.WatchExcept(ctx,
				func() []sockwatch.Port {
					w := want()
					out := make([]sockwatch.Port, len(w))
					for i, p := range w {
						out[i] = sockwatch.Port{Proto: p.Proto, Num: p.Num}
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

// vipPlane is server.VIPs with package vip.
type vipPlane struct{}

func (vipPlane) Add(ifname string, p netip.Prefix) error    { return vip.Add(ifname, p) }
func (vipPlane) Remove(ifname string, p netip.Prefix) error { return vip.Remove(ifname, p) }
func (vipPlane) Announce(ifname string, a netip.Addr) error { return vip.Announce(ifname, a) }

// proxyPlane is server.DataPlane with the user-space proxy: one proxy
// per VIP and port, each serving in a goroutine joined by its Stop.
type proxyPlane struct {
	log     logrus.FieldLogger
	mu      sync.Mutex
	proxies map[netip.AddrPort]*served
}

type served struct {
	p    proxy.Proxy
	done chan struct{}
}

func (pp *proxyPlane) Serve(addr netip.AddrPort, o lvsdspec.Options, pick server.Picker) error {
	p, err := proxy.Listen(o.Port.Proto, addr, pick, proxy.Options{ProxyProtocol: o.ProxyProtocol, Log: pp.log})
	if err != nil {
		return err
	}
	s := &served{p: p, done: make(chan struct{})}
	pp.mu.Lock()
	pp.proxies[addr] = s
	pp.mu.Unlock()
	go func() {
		defer close(s.done)
		if err := p.Serve(); err != nil {
			pp.log.WithError(err).WithField("addr", o.Port.Proto+" "+addr.String()).Warn("proxy stopped")
		}
	}()
	return nil
}

func (pp *proxyPlane) Stop(addr netip.AddrPort, _ string) error {
	pp.mu.Lock()
	s, ok := pp.proxies[addr]
	delete(pp.proxies, addr)
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
