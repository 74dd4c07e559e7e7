// Package server is openssi-lvsd's shell. On every node it watches the
// node's listening sockets (through the WatchListening function it is
// given: sock_diag in production) and registers the node in Consul's
// catalog as a backend of each registered port it listens on
// (openssi-lvs-tcp-80, the node's address); it follows those
// registrations of every node into the scheduler (package pool), and the
// membership (a NODEDOWN takes a node out at once). It runs the director
// election: initfailover's Elector on the EX lock "director" of the
// root-only lockspace openssi.lvsd, exactly as openssi-keepalived runs an
// application, the director role being the one "unit" it starts and
// stops. While this node is the director it holds the VIPs (through the
// VIPs interface: netlink and gratuitous ARP in production) and forwards
// the registered ports (through the DataPlane interface: the user-space
// proxy or IPVS). It serves `ssi vip` on the local socket.
package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/daemons/initfailover/election"
	ifserver "github.com/openssi/openssi/daemons/initfailover/server"
	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/daemons/lvsd/pool"
	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/rpc"
)

// Picker chooses a new connection's backend: the shape of
// daemons/lvsd/proxy's Picker. done is called once when the connection
// ends; ok is false when the port has no backend.
type Picker interface {
	Pick(client netip.AddrPort) (backend netip.AddrPort, done func(), ok bool)
}

// DataPlane forwards the director's traffic.
type DataPlane interface {
	// Serve starts forwarding addr (a VIP and a registered port) to the
	// backends pick chooses, with the port's options.
	Serve(addr netip.AddrPort, o lvsdspec.Options, pick Picker) error
	// Stop stops forwarding addr for the port's protocol and ends its
	// connections.
	Stop(addr netip.AddrPort, proto string) error
	// DropBackend ends at once the connections in progress to backend
	// (its node died).
	DropBackend(backend netip.AddrPort)
}

// BackendSetter is a DataPlane that forwards in the kernel (IPVS): it
// asks no Picker, so the server hands it each served address's backends
// and weights whenever they change (its Serve gets a Picker it may
// ignore, and DropBackend is still called for a dead node).
type BackendSetter interface {
	SetBackends(addr netip.AddrPort, o lvsdspec.Options, backends []pool.BackendView)
}

// VIPs puts the cluster addresses on the director's interfaces: the
// shape of daemons/lvsd/vip.
type VIPs interface {
	// Add adds vip to the interface; it does nothing when it is there.
	Add(ifname string, vip netip.Prefix) error
	// Remove removes it; it does nothing when it is not there.
	Remove(ifname string, vip netip.Prefix) error
	// Announce sends a gratuitous ARP (IPv4) or an unsolicited neighbour
	// advertisement (IPv6) for addr from the interface.
	Announce(ifname string, addr netip.Addr) error
}

// WatchListening reports, through changed, which of the ports want
// returns have a listening socket on this node, at start and within
// every of each change, until ctx ends: the shape of
// daemons/lvsd/sockwatch's Watch.
type WatchListening func(ctx context.Context, want func() []lvsdspec.Options, every time.Duration, changed func(map[lvsdspec.Port]bool)) error

// NodeLoad is one node's load vector, as vprocd reports it.
type NodeLoad struct {
	Node  uint32
	CPUs  int
	Score float64
}

// VIP is one cluster address on its interface.
type VIP struct {
	Interface string
	Prefix    netip.Prefix
}

// Config configures a Server.
type Config struct {
	// Self is this node's number; Addr its address, which the director
	// forwards to (the Consul agent's advertise address).
	Self uint32
	Addr netip.Addr
	// VIPs are the cluster addresses (lvsd.vips).
	VIPs []VIP
	// Ports are the ports of openssi.yaml (lvsd.ports); those in Consul
	// KV (ssi vip port add) come on top.
	Ports []lvsdspec.Options
	// StopTimeout: lvsd.stop_timeout. WatchEvery: lvsd.watch_every.
	StopTimeout time.Duration
	WatchEvery  time.Duration
	// DlmLease: the cluster's dlmd.lease (see ifserver.ElectorConfig).
	DlmLease time.Duration
	// Retry is how long to wait before asking Consul or dlmd again.
	// Default 1s.
	Retry time.Duration
	// Announce lists when the director announces the VIPs after taking
	// them, from the takeover. Default 0, 500ms, 1s, 2s.
	Announce []time.Duration

	// IPVS: the data plane is the kernel's IPVS, which sends no PROXY
	// header (ssi vip port add refuses proxy_protocol).
	IPVS bool

	Consul  *api.Client
	KV      *consul.KV
	Session func(ctx context.Context) (*dlm.Client, error)
	Data    DataPlane
	VIP     VIPs
	Watch   WatchListening
	// Loads returns the nodes' load vectors (nil: every weight is
	// pool.DefaultWeight). Asked every LoadEvery (default 2s).
	Loads     func(ctx context.Context) ([]NodeLoad, error)
	LoadEvery time.Duration
	// Health, when set, is told whether this node's lvsd works: an error
	// while the watch of its listening sockets fails, nil once it works
	// again.
	Health func(error)
	Log    logrus.FieldLogger
}

// Server is one node's lvsd.
type Server struct {
	cfg Config
	log logrus.FieldLogger
	el  *ifserver.Elector

	mu   sync.Mutex
	pool *pool.Pool
	// up: the UP members; names: the Consul node holding each number;
	// addrs: each member's address as clmsd reports it (the only address
	// the director forwards it).
	up    map[uint32]bool
	names map[uint32]string
	addrs map[uint32]netip.Addr
	// cfgPorts and kvPorts are the registered ports of openssi.yaml and
	// of Consul KV; ports the two together (openssi.yaml first).
	cfgPorts map[lvsdspec.Port]lvsdspec.Options
	kvPorts  map[lvsdspec.Port]kvPort
	ports    map[lvsdspec.Port]lvsdspec.Options
	// dropped: the KV ports left out of ports, already logged.
	dropped map[lvsdspec.Port]string
	// listening: the registered ports this node listens on.
	listening map[lvsdspec.Port]bool
	// director is the director's node number as the catalog says (0:
	// none known).
	director uint32
	// regs are the catalog's entries of each port; warned the untrusted
	// ones already logged.
	regs   map[lvsdspec.Port][]registration
	warned map[string]bool
	// registered: this node's services in the catalog (the registrar's).
	registered map[string]bool

	// dataMu serializes the director's changes to the data plane and
	// the VIPs. It is never taken with mu held (the data plane calls
	// the pickers, which take mu, under locks of its own).
	dataMu    sync.Mutex
	directing bool
	dirGen    int
	serving   map[served]lvsdspec.Options
	serveErr  map[served]string // the last failure logged
	vipsHeld  map[VIP]bool
	vipErr    map[VIP]string // the last failure logged

	// pushed: what a BackendSetter was last given, per address.
	pushed map[served][]pool.BackendView
	// poolChanged wakes the push to a BackendSetter.
	poolChanged chan struct{}

	wake     chan struct{} // the ports changed
	register chan struct{} // this node's registrations to reconcile
	wg       sync.WaitGroup
	work     context.Context
}

// New returns a Server; Run runs it.
func New(cfg Config) *Server {
	if cfg.Retry == 0 {
		cfg.Retry = time.Second
	}
	if cfg.WatchEvery == 0 {
		cfg.WatchEvery = 200 * time.Millisecond
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 500 * time.Millisecond
	}
	if cfg.LoadEvery == 0 {
		cfg.LoadEvery = 2 * time.Second
	}
	if cfg.Announce == nil {
		cfg.Announce = []time.Duration{0, 500 * time.Millisecond, time.Second, 2 * time.Second}
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	s := &Server{cfg: cfg, log: cfg.Log, pool: pool.New(), up: map[uint32]bool{}, names: map[uint32]string{}, addrs: map[uint32]netip.Addr{},
		cfgPorts: map[lvsdspec.Port]lvsdspec.Options{}, kvPorts: map[lvsdspec.Port]kvPort{}, dropped: map[lvsdspec.Port]string{},
		ports: map[lvsdspec.Port]lvsdspec.Options{}, listening: map[lvsdspec.Port]bool{},
		serving: map[served]lvsdspec.Options{}, serveErr: map[served]string{}, vipsHeld: map[VIP]bool{}, vipErr: map[VIP]string{},
		regs: map[lvsdspec.Port][]registration{}, warned: map[string]bool{}, registered: map[string]bool{},
		pushed: map[served][]pool.BackendView{}, poolChanged: make(chan struct{}, 1),
		wake: make(chan struct{}, 1), register: make(chan struct{}, 1)}
	for _, o := range cfg.Ports {
		if _, dup := s.cfgPorts[o.Port]; !dup {
			s.cfgPorts[o.Port] = o
		}
	}
	s.mergePortsLocked()
	s.el = ifserver.NewElector(ifserver.ElectorConfig{
		Self: cfg.Self, Target: directorUnit, StopTimeout: cfg.StopTimeout,
		Lockspace: lvsdspec.Lockspace, Resource: lvsdspec.Resource, Role: "director",
		Systemd: (*director)(s), Session: cfg.Session, Retry: cfg.Retry, DlmLease: cfg.DlmLease, Log: cfg.Log,
	})
	return s
}

// Membership records whether node, held by the Consul node name at
// address addr (as clmsd reports them: "" when the event carries none),
// is an UP member. A node that goes DOWN leaves every port's pool at once
// and its connections in progress are ended.
func (s *Server) Membership(node uint32, name, addr string, up bool) {
	s.mu.Lock()
	var drop []pool.Backend
	changed := false
	if name != "" && s.names[node] != name {
		s.names[node] = name
		changed = true
	}
	if a, err := netip.ParseAddr(addr); err == nil && a.Zone() == "" && s.addrs[node] != a.Unmap() {
		s.addrs[node] = a.Unmap()
		changed = true
	}
	if changed {
		for p := range s.regs {
			drop = append(drop, s.applyRegsLocked(p)...)
		}
	}
	if up {
		s.up[node] = true
		s.pool.NodeUp(node)
	} else {
		delete(s.up, node)
		drop = append(drop, s.pool.NodeDown(node)...)
		s.pool.ForgetWeight(node)
	}
	s.mu.Unlock()
	poke(s.poolChanged)
	s.el.SetUp(node, up)
	s.drop(drop)
}

// drop ends the connections to the backends (never with mu held).
func (s *Server) drop(bs []pool.Backend) {
	for _, b := range bs {
		s.log.WithField("node", b.Node).WithField("backend", b.Addr.String()).Info("ending the connections to a backend that left")
		s.cfg.Data.DropBackend(b.Addr)
	}
}

// Run runs lvsd until ctx ends, then gives the director role up (the
// VIPs removed, the forwarding stopped, the lock released so the next
// director takes over at once) and withdraws this node's registrations.
func (s *Server) Run(ctx context.Context, beat func()) error {
	work, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.work = work
	s.markVIPsHeld()
	s.spawn(work, s.watchKVPorts)
	s.spawn(work, s.watchCatalog)
	s.spawn(work, s.registrar)
	s.spawn(work, s.watchListening)
	if s.cfg.Loads != nil {
		s.spawn(work, s.watchLoads)
	}
	if _, ok := s.cfg.Data.(BackendSetter); ok {
		s.spawn(work, func(ctx context.Context) {
			for {
				select {
				case <-ctx.Done():
					return
				case <-s.poolChanged:
					s.reconcileData()
				}
			}
		})
	}
	s.spawn(work, s.tick)
	err := s.el.Run(ctx, beat)
	// The Elector stopped the director role before returning (unless
	// it gave up waiting: stop it here too); then withdraw this node's
	// registrations so the director stops sending here.
	cancel()
	s.wg.Wait()
	s.dataMu.Lock()
	s.directing = false
	s.dataMu.Unlock()
	s.reconcileData()
	s.deregisterAll()
	return err
}

// KeepListening is how many failed checks of the listening sockets in a
// row keep the last answer: past them this node leaves every pool.
const KeepListening = 5

// watchListening runs the watch of this node's listening sockets until
// ctx ends. A failed check (sock_diag refused, a netlink error) is tried
// again with a backoff from WatchEvery to 1s, logged once and reported
// to Config.Health; the last answer holds for KeepListening failures in
// a row, then the node leaves every pool until a check succeeds again.
func (s *Server) watchListening(ctx context.Context) {
	failures := 0
	backoff := s.cfg.WatchEvery
	for ctx.Err() == nil {
		err := s.cfg.Watch(ctx, s.wantPorts, s.cfg.WatchEvery, func(m map[lvsdspec.Port]bool) {
			if failures > 0 {
				s.log.Info("watching this node's listening sockets works again")
				s.health(nil)
			}
			failures, backoff = 0, s.cfg.WatchEvery
			s.setListening(m)
		})
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("lvsd: the watch of listening sockets ended")
		}
		failures++
		if failures == 1 {
			s.log.WithError(err).Error("watching this node's listening sockets failed: trying again; this node stays a backend for a few more tries")
			s.health(fmt.Errorf("lvsd: watching this node's listening sockets: %w", err))
		}
		if failures == KeepListening+1 {
			s.log.WithError(err).Error("watching this node's listening sockets still fails: this node leaves every pool until it works again")
			s.setListening(nil)
		}
		sleep(ctx, backoff)
		backoff = min(2*backoff, max(time.Second, s.cfg.WatchEvery))
	}
}

func (s *Server) health(err error) {
	if s.cfg.Health != nil {
		s.cfg.Health(err)
	}
}

// markVIPsHeld counts every VIP held: a previous run of this daemon
// that crashed while directing left its VIPs on the interfaces, and the
// Elector's stop at boot must remove them.
func (s *Server) markVIPsHeld() {
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	for _, v := range s.cfg.VIPs {
		s.vipsHeld[v] = true
	}
}

func (s *Server) spawn(ctx context.Context, f func(context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f(ctx)
	}()
}

// tick expires affinities and, on the director, keeps the VIPs on and
// the data plane serving (a failed Add or Serve is tried again), every
// second.
func (s *Server) tick(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		s.pool.Expire(time.Now())
		s.mu.Unlock()
		s.reconcileData()
	}
}

// wantPorts is what the socket watch looks for: the registered ports.
func (s *Server) wantPorts() []lvsdspec.Options {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]lvsdspec.Options, 0, len(s.ports))
	for _, o := range s.ports {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b lvsdspec.Options) int { return comparePort(a.Port, b.Port) })
	return out
}

func comparePort(a, b lvsdspec.Port) int {
	if a.Proto != b.Proto {
		if a.Proto < b.Proto {
			return -1
		}
		return 1
	}
	return int(a.Num) - int(b.Num)
}

// setListening records which registered ports this node listens on.
func (s *Server) setListening(m map[lvsdspec.Port]bool) {
	s.mu.Lock()
	clear(s.listening)
	for p, on := range m {
		if on {
			s.listening[p] = true
		}
	}
	s.mu.Unlock()
	poke(s.register)
}

// mergePortsLocked recomputes ports from cfgPorts and kvPorts and tells
// the pool: openssi.yaml's first, then those of Consul KV from the
// oldest, one protocol per port number, at most lvsdspec.MaxPorts in all
// (what is left out is logged once and ignored: the node token may write
// any number of them).
func (s *Server) mergePortsLocked() (drop []pool.Backend) {
	next := map[lvsdspec.Port]lvsdspec.Options{}
	for p, o := range s.cfgPorts {
		next[p] = o
	}
	kv := make([]lvsdspec.Port, 0, len(s.kvPorts))
	for p := range s.kvPorts {
		if _, ok := next[p]; !ok {
			kv = append(kv, p)
		}
	}
	slices.SortFunc(kv, func(a, b lvsdspec.Port) int {
		if ca, cb := s.kvPorts[a].created, s.kvPorts[b].created; ca != cb {
			if ca < cb {
				return -1
			}
			return 1
		}
		return comparePort(a, b)
	})
	// One protocol per port number: tcp/N and udp/N together (two
	// nodes' ssi vip port add racing) would make the director stop and
	// serve the number in turn on every reconcile.
	byNum := map[uint16]lvsdspec.Port{}
	for p := range next {
		byNum[p.Num] = p
	}
	dropped := map[lvsdspec.Port]string{}
	for _, p := range kv {
		if q, ok := byNum[p.Num]; ok && q != p {
			from := "an older ssi vip port add"
			if _, cfg := s.cfgPorts[q]; cfg {
				from = "openssi.yaml (lvsd.ports)"
			}
			dropped[p] = fmt.Sprintf("port %d is registered as %s by %s: one protocol per port", p.Num, q, from)
			continue
		}
		if len(next) >= lvsdspec.MaxPorts {
			dropped[p] = fmt.Sprintf("more than %d registered ports (lvsd.ports and ssi vip port add together)", lvsdspec.MaxPorts)
			continue
		}
		next[p] = s.kvPorts[p].o
		byNum[p.Num] = p
	}
	for p, why := range dropped {
		if s.dropped[p] != why {
			s.log.WithField("port", p.String()).Warn("ignoring a port of ssi vip port add: " + why)
		}
	}
	s.dropped = dropped
	for p := range s.ports {
		if _, ok := next[p]; !ok {
			drop = append(drop, s.pool.RemovePort(p)...)
		}
	}
	for p, o := range next {
		if old, ok := s.ports[p]; !ok || !old.Equal(o) {
			s.pool.SetPort(o)
		}
	}
	s.ports = next
	return drop
}

// Ports returns the registered ports and whether each comes from
// openssi.yaml (else from ssi vip port add).
func (s *Server) Ports() (ports []lvsdspec.Options, fromConfig map[lvsdspec.Port]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fromConfig = map[lvsdspec.Port]bool{}
	for p, o := range s.ports {
		ports = append(ports, o)
		_, fromConfig[p] = s.cfgPorts[p]
	}
	slices.SortFunc(ports, func(a, b lvsdspec.Options) int { return comparePort(a.Port, b.Port) })
	return ports, fromConfig
}

// Status is what `ssi vip` shows of this node's lvsd.
type Status struct {
	Self uint32
	// Director is the director's node (0: none known); Directing says
	// whether this node is it and holds the VIPs.
	Director  uint32
	Directing bool
	State     election.State
	Since     time.Time
	VIPs      []VIP
	// Pool: the ports and their backends; the connection counts are
	// the director's own.
	Pool      []pool.PortView
	Listening []lvsdspec.Port
}

// Status returns this node's view.
func (s *Server) Status() Status {
	st, since, _ := s.el.Status()
	s.dataMu.Lock()
	directing := s.directing
	s.dataMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Status{Self: s.cfg.Self, Director: s.director, Directing: directing, State: st, Since: since,
		VIPs: slices.Clone(s.cfg.VIPs), Pool: s.pool.View()}
	if directing {
		out.Director = s.cfg.Self
	}
	for p := range s.listening {
		out.Listening = append(out.Listening, p)
	}
	slices.SortFunc(out.Listening, comparePort)
	return out
}

// picker is a port's Picker: the pool under mu.
type picker struct {
	s    *Server
	port lvsdspec.Port
}

func (p picker) Pick(client netip.AddrPort) (netip.AddrPort, func(), bool) {
	p.s.mu.Lock()
	c, ok := p.s.pool.Pick(time.Now(), p.port, client.Addr())
	p.s.mu.Unlock()
	if !ok {
		return netip.AddrPort{}, func() {}, false
	}
	var once sync.Once
	return c.Backend.Addr, func() {
		once.Do(func() {
			p.s.mu.Lock()
			p.s.pool.End(time.Now(), c)
			p.s.mu.Unlock()
		})
	}, true
}

// trusted reports whether a catalog entry claiming node number node was
// registered on the Consul node that holds that number (any node's token
// may register an entry claiming any number).
func (s *Server) trustedLocked(node uint32, consulNode string) bool {
	name, ok := s.names[node]
	return ok && rpc.SameNode(name, consulNode)
}

// backendAddrOKLocked reports whether the director may forward to a
// to reach node: the address clmsd reports for that member, never what a
// catalog entry claims (any node's token may register any address, an
// outside host's, a loopback or the VIP itself), and in any case no
// unspecified, multicast or VIP address, nor a loopback one unless this
// node's own address is loopback too (a test cluster on one host).
func (s *Server) backendAddrOKLocked(node uint32, a netip.Addr) bool {
	if want, ok := s.addrs[node]; !ok || want != a {
		return false
	}
	if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast() || a.IsLinkLocalMulticast() {
		return false
	}
	if a.IsLoopback() && !s.cfg.Addr.IsLoopback() {
		return false
	}
	if a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return false
	}
	for _, v := range s.cfg.VIPs {
		if v.Prefix.Addr().Unmap() == a {
			return false
		}
	}
	return true
}

// backendOf turns a catalog entry of port p into a backend: the node
// number in its Meta, its address, the port's own number.
func backendOf(e *api.ServiceEntry, p lvsdspec.Port) (pool.Backend, string, bool) {
	if e == nil || e.Service == nil || e.Node == nil {
		return pool.Backend{}, "", false
	}
	n, err := strconv.ParseUint(e.Service.Meta[rpc.MetaNode], 10, 32)
	if err != nil || n == 0 || e.Service.Port != int(p.Num) {
		return pool.Backend{}, "", false
	}
	a, err := netip.ParseAddr(e.Service.Address)
	if err != nil || a.Zone() != "" {
		return pool.Backend{}, "", false
	}
	return pool.Backend{Node: uint32(n), Addr: netip.AddrPortFrom(a.Unmap(), p.Num)}, e.Node.Node, true
}

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
