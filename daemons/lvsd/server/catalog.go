package server

import (
	"context"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/daemons/lvsd/pool"
	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/rpc"
)

// DirectorService is the catalog service the director registers on its
// own agent while it holds the VIPs, so that `ssi vip` on any node (and
// `consul catalog services`) names it.
const DirectorService = lvsdspec.ServicePrefix + "director"

// PortRecord is a port registered with `ssi vip port add`, in Consul KV
// at openssi/lvs/ports/PROTO-N.
type PortRecord struct {
	ProxyProtocol   bool          `json:"proxy_protocol,omitempty"`
	Affinity        string        `json:"affinity,omitempty"`
	AffinityTimeout time.Duration `json:"affinity_timeout,omitempty"`
	// Users are the users (names or uids), besides root, whose listening
	// sockets count for the port.
	Users []string `json:"users,omitempty"`
}

// Options checks the record of port p and settles its options. A user
// this node does not know is left out (its sockets do not count here)
// and returned in unknown.
func (r PortRecord) Options(p lvsdspec.Port) (o lvsdspec.Options, unknown []string, err error) {
	return lvsdspec.PortConfig{Port: p.String(), ProxyProtocol: r.ProxyProtocol, Affinity: r.Affinity, AffinityTimeout: r.AffinityTimeout,
		Users: r.Users}.OptionsKnownUsers()
}

// RecordOf is the record of o.
func RecordOf(o lvsdspec.Options) PortRecord {
	r := PortRecord{ProxyProtocol: o.ProxyProtocol, Users: o.Users}
	if o.Affinity {
		r.Affinity, r.AffinityTimeout = lvsdspec.AffinitySource, o.AffinityTimeout
	}
	return r
}

// portOfKey parses the key tcp-80.
func portOfKey(key string) (lvsdspec.Port, bool) {
	proto, num, ok := strings.Cut(key, "-")
	if !ok {
		return lvsdspec.Port{}, false
	}
	p, err := lvsdspec.ParsePort(proto + "/" + num)
	return p, err == nil
}

// watchKVPorts follows the ports of ssi vip port add.
func (s *Server) watchKVPorts(ctx context.Context) {
	var index uint64
	failing := false
	for ctx.Err() == nil {
		ents, next, err := s.cfg.KV.List(ctx, lvsdspec.KVPorts, consul.Wait{Index: index, Time: time.Minute})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				s.log.WithError(err).Warn("reading the registered ports from Consul KV: keeping what was read last")
				failing = true
			}
			sleep(ctx, s.cfg.Retry)
			continue
		}
		failing = false
		if next < index {
			next = 0
		}
		index = next
		s.applyKVPorts(ents)
	}
}

// kvPort is a port of Consul KV: its options and when it was created
// (the older of two entries wins a conflict, and the cap keeps them).
type kvPort struct {
	o       lvsdspec.Options
	created uint64
}

// applyKVPorts takes the entries of openssi/lvs/ports/.
func (s *Server) applyKVPorts(ents []consul.Entry) {
	kv := map[lvsdspec.Port]kvPort{}
	for _, e := range ents {
		key := strings.TrimPrefix(e.Key, lvsdspec.KVPorts)
		p, ok := portOfKey(key)
		var r PortRecord
		var o lvsdspec.Options
		var unknown []string
		var err error
		if ok {
			if err = e.Decode(&r); err == nil {
				o, unknown, err = r.Options(p)
			}
		}
		if !ok || err != nil {
			s.log.WithField("key", e.Key).WithError(err).Warn("ignoring a registered port that is not valid")
			continue
		}
		if len(unknown) > 0 {
			s.log.WithField("key", e.Key).WithField("users", unknown).Warn("users of a registered port unknown on this node: their sockets do not count here")
		}
		kv[p] = kvPort{o: o, created: e.CreateIndex}
	}
	s.mu.Lock()
	s.kvPorts = kv
	drop := s.mergePortsLocked()
	s.mu.Unlock()
	s.drop(drop)
	poke(s.wake)
	poke(s.register)
	s.reconcileData()
}

// watchCatalog runs one blocking query per registered port on its
// service's passing instances, and one on the director's service,
// starting and ending them as the ports change.
func (s *Server) watchCatalog(ctx context.Context) {
	running := map[lvsdspec.Port]context.CancelFunc{}
	defer func() {
		for _, c := range running {
			c()
		}
	}()
	s.spawn(ctx, func(ctx context.Context) { s.watchService(ctx, DirectorService, s.setDirector) })
	for {
		s.mu.Lock()
		want := map[lvsdspec.Port]bool{}
		for p := range s.ports {
			want[p] = true
		}
		s.mu.Unlock()
		for p, c := range running {
			if !want[p] {
				c()
				delete(running, p)
				s.mu.Lock()
				delete(s.regs, p)
				s.mu.Unlock()
			}
		}
		for p := range want {
			if _, ok := running[p]; ok {
				continue
			}
			pctx, cancel := context.WithCancel(ctx)
			running[p] = cancel
			s.spawn(pctx, func(ctx context.Context) {
				s.watchService(ctx, p.Service(), func(ents []*api.ServiceEntry) { s.setRegistrations(p, ents) })
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
	}
}

// watchService follows the passing instances of a service.
func (s *Server) watchService(ctx context.Context, name string, apply func([]*api.ServiceEntry)) {
	var index uint64
	failing := false
	for ctx.Err() == nil {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: time.Minute}).WithContext(ctx)
		ents, meta, err := s.cfg.Consul.Health().Service(name, "", true, q)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				s.log.WithError(err).WithField("service", name).Warn("reading the catalog: keeping what was read last")
				failing = true
			}
			sleep(ctx, s.cfg.Retry)
			continue
		}
		failing = false
		next := meta.LastIndex
		if next < index {
			next = 0
		}
		index = next
		apply(ents)
	}
}

// registration is one catalog entry of a port: the backend and the
// Consul node it was registered on.
type registration struct {
	b          pool.Backend
	consulNode string
}

// setRegistrations takes the catalog's passing entries of port p.
func (s *Server) setRegistrations(p lvsdspec.Port, ents []*api.ServiceEntry) {
	regs := make([]registration, 0, len(ents))
	for _, e := range ents {
		if b, node, ok := backendOf(e, p); ok {
			regs = append(regs, registration{b: b, consulNode: node})
		}
	}
	s.mu.Lock()
	if _, ok := s.ports[p]; !ok {
		s.mu.Unlock()
		return
	}
	s.regs[p] = regs
	drop := s.applyRegsLocked(p)
	s.mu.Unlock()
	poke(s.poolChanged)
	s.drop(drop)
}

// applyRegsLocked hands the pool the trusted registrations of port p:
// those registered on the Consul node holding the number they claim, at
// the address clmsd reports for that node.
func (s *Server) applyRegsLocked(p lvsdspec.Port) []pool.Backend {
	var bs []pool.Backend
	for _, r := range s.regs[p] {
		switch {
		case !s.trustedLocked(r.b.Node, r.consulNode):
			if key := r.consulNode + "/" + strconv.Itoa(int(r.b.Node)); !s.warned[key] {
				s.warned[key] = true
				s.log.WithField("consul_node", r.consulNode).WithField("node", r.b.Node).Warn("ignoring a backend registered on a Consul node that does not hold its node number")
			}
		case !s.backendAddrOKLocked(r.b.Node, r.b.Addr.Addr()):
			if key := r.consulNode + "/" + strconv.Itoa(int(r.b.Node)) + "/" + r.b.Addr.Addr().String(); !s.warned[key] {
				s.warned[key] = true
				s.log.WithField("consul_node", r.consulNode).WithField("node", r.b.Node).WithField("address", r.b.Addr.Addr().String()).
					Warn("ignoring a backend whose address is not the one clmsd reports for its node")
			}
		default:
			bs = append(bs, r.b)
		}
	}
	return s.pool.SetBackends(p, bs)
}

// setDirector takes the catalog's entries of the director's service:
// the newest trusted one names the director. A director cut off from the
// cluster leaves its entry behind until its agent reaches the servers
// again, and the entry passes again as soon as its node is back; every
// director registers only after it won the lock, so the newest entry is
// the director's.
func (s *Server) setDirector(ents []*api.ServiceEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.director = 0
	var newest uint64
	for _, e := range ents {
		if e.Service == nil || e.Node == nil {
			continue
		}
		n, err := strconv.ParseUint(e.Service.Meta[rpc.MetaNode], 10, 32)
		if err == nil && s.trustedLocked(uint32(n), e.Node.Node) && (s.director == 0 || e.Service.ModifyIndex > newest) {
			s.director, newest = uint32(n), e.Service.ModifyIndex
		}
	}
}

// registrar keeps this node's registrations in the catalog what they
// should be: one per registered port it listens on, and the director's
// while it directs. A failed call is tried again after Retry.
func (s *Server) registrar(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		if !s.reconcileRegistrations(ctx) {
			retry.Reset(s.cfg.Retry)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.register:
		case <-retry.C:
		}
	}
}

// wantRegistrations returns the services this node should register.
func (s *Server) wantRegistrations() map[string]*api.AgentServiceRegistration {
	out := map[string]*api.AgentServiceRegistration{}
	meta := map[string]string{rpc.MetaNode: strconv.Itoa(int(s.cfg.Self))}
	addr := s.cfg.Addr.String()
	s.mu.Lock()
	for p := range s.listening {
		if _, ok := s.ports[p]; !ok {
			continue
		}
		reg := &api.AgentServiceRegistration{ID: p.Service(), Name: p.Service(), Address: addr, Port: int(p.Num), Meta: meta}
		if p.Proto == "tcp" {
			// The agent checks that the director can reach it: a
			// process listening on loopback only is no backend.
			reg.Check = &api.AgentServiceCheck{
				Name: p.Service() + " accepts", TCP: net.JoinHostPort(addr, strconv.Itoa(int(p.Num))),
				Interval: "1s", Timeout: "1s", Status: api.HealthPassing, DeregisterCriticalServiceAfter: "1m",
			}
		}
		out[reg.ID] = reg
	}
	s.mu.Unlock()
	s.dataMu.Lock()
	if s.directing {
		out[DirectorService] = &api.AgentServiceRegistration{ID: DirectorService, Name: DirectorService, Address: addr, Meta: meta}
	}
	s.dataMu.Unlock()
	return out
}

// reconcileRegistrations registers and deregisters; false when a call
// failed.
func (s *Server) reconcileRegistrations(ctx context.Context) bool {
	want := s.wantRegistrations()
	ok := true
	for id := range s.registered {
		if _, keep := want[id]; keep {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := consul.DeregisterService(cctx, s.cfg.Consul, id)
		cancel()
		if err != nil {
			s.log.WithError(err).WithField("service", id).Warn("withdrawing a registration: trying again")
			ok = false
			continue
		}
		s.log.WithField("service", id).Info("withdrawn from the catalog")
		delete(s.registered, id)
	}
	for id, reg := range want {
		if s.registered[id] {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := consul.RegisterService(cctx, s.cfg.Consul, reg)
		cancel()
		if err != nil {
			s.log.WithError(err).WithField("service", id).Warn("registering: trying again")
			ok = false
			continue
		}
		s.log.WithField("service", id).Info("registered in the catalog")
		s.registered[id] = true
	}
	return ok
}

// deregisterAll withdraws every registration of this node (at exit).
func (s *Server) deregisterAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for id := range s.registered {
		if err := consul.DeregisterService(ctx, s.cfg.Consul, id); err != nil {
			s.log.WithError(err).WithField("service", id).Warn("withdrawing a registration at exit")
		}
		delete(s.registered, id)
	}
}

// watchLoads turns the nodes' load vectors into their weights.
func (s *Server) watchLoads(ctx context.Context) {
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.LoadEvery)
		loads, err := s.cfg.Loads(cctx)
		cancel()
		if err != nil {
			s.log.WithError(err).Debug("no load vectors: the weights stay as they are")
		} else {
			seen := map[uint32]bool{}
			s.mu.Lock()
			for _, l := range loads {
				if s.up[l.Node] {
					s.pool.SetWeight(l.Node, pool.WeightFromLoad(l.CPUs, l.Score))
					seen[l.Node] = true
				}
			}
			for n := range s.up {
				if !seen[n] {
					s.pool.ForgetWeight(n)
				}
			}
			s.mu.Unlock()
			poke(s.poolChanged)
		}
		sleep(ctx, s.cfg.LoadEvery)
	}
}
