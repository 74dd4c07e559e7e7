package server

import (
	"context"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/runner"
	"github.com/openssi/openssi/daemons/vprocd/stdiocodec"
	"github.com/openssi/openssi/internal/rpc"
)

// ServiceName is vprocd's service (the service of its certificates'
// identities, openssi-vprocd.<node>).
var ServiceName = rpc.ServiceName("vprocd")

// Config configures a Server.
type Config struct {
	// Node is this node's number.
	Node uint32
	// Source holds this node's certificates, for dialling peers.
	Source rpc.Source
	// Lookup returns the address of node n's vprocd.
	Lookup func(ctx context.Context, n uint32) (string, error)
	// NodeName returns the Consul node name holding node number n's
	// claim: a peer is believed to be node n only with that node's
	// certificate ("" when unknown).
	NodeName func(ctx context.Context, n uint32) (string, error)
	// DialOptions are added to every dial of a peer (tests).
	DialOptions []rpc.DialOption
	// MaxExecsPerUID bounds the programs one uid runs here at once
	// (0: no bound).
	MaxExecsPerUID int
	// Scopes, when set, puts each program in a scope of its own (under
	// systemd); without it a program is only a process group.
	Scopes Scoper
	// WarmGates, with Scopes, is how many gates are kept started ahead
	// in their scopes for each caller identity (runner.Warm); 0 none.
	WarmGates int
	// OutputGrace is how long, after a program exits, its output is
	// still read when a process it left holds it open. Default 500ms.
	OutputGrace time.Duration
	// Load configures the load exchange and placement (load.go).
	Load LoadConfig
	// OriginGrace is how long a program whose origin's link broke waits
	// for the origin's NODEDOWN before it is killed as a program whose
	// caller is gone. Default DefaultOriginGrace.
	OriginGrace time.Duration
	// CoopDir is where the checkpoint sockets of the programs started
	// migratable are made (DefaultCoopDir when empty).
	CoopDir string
	// Migrate configures migration (migrate.go).
	Migrate MigrateConfig
	// Leveler configures the load leveler (leveler.go).
	Leveler LevelerConfig
	// Log receives the server's logs.
	Log logrus.FieldLogger
	// Proc is the /proc the process table is read from; nil is the
	// node's (tests give a slow or fake one).
	Proc fs.FS
}

// Server is one node's vprocd.
type Server struct {
	cfg Config
	log logrus.FieldLogger

	mu    sync.Mutex
	nodes map[uint32]*nodeState
	conns map[uint32]*grpc.ClientConn
	// execs counts the programs running here by uid.
	execs map[uint32]int

	peers *rpc.PeerCheck
	load  *loadState
	// recs are the programs started through vprocd that run here.
	recs records
	// stopping is closed by Stop: a program whose origin's link breaks
	// then is killed at once, as when vprocd stops.
	stopping chan struct{}
	stopOnce sync.Once
	// cp is where the cluster's processes started through vprocd are
	// (package pgroup).
	cp clusterProcs
	// where is the cluster's table /cluster/proc last read to find a
	// process's node.
	where whereCache
	// warm keeps gates started ahead (nil without Scopes or WarmGates).
	warm *runner.Warm
	// mig is the move protocol and its moves (migrate.go).
	mig *mover
	// lev is the load leveler (leveler.go).
	lev *leveler
}

// Stop says vprocd is stopping: the programs of callers still attached
// are to be killed when their streams end, without waiting to see whether
// their origin went DOWN.
func (s *Server) Stop() { s.stopOnce.Do(func() { close(s.stopping) }) }

// admit counts one more program of uid, or returns a ResourceExhausted
// status when uid runs MaxExecsPerUID already; done uncounts it.
func (s *Server) admit(uid uint32) (done func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.cfg.MaxExecsPerUID; m > 0 && s.execs[uid] >= m {
		return nil, status.Errorf(codes.ResourceExhausted, "vproc: too many programs: uid %d runs %d on node %d (vprocd.max_execs_per_uid)", uid, m, s.cfg.Node)
	}
	s.execs[uid]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.execs[uid]--; s.execs[uid] <= 0 {
			delete(s.execs, uid)
		}
	}, nil
}

// nodeState is what this vprocd believes of another node.
type nodeState struct {
	up bool
	// down is closed when the node goes DOWN (and replaced when it
	// comes UP again).
	down chan struct{}
}

// New returns a Server. Until Membership is called it believes no node
// but itself.
func New(cfg Config) *Server {
	if cfg.OutputGrace == 0 {
		cfg.OutputGrace = 500 * time.Millisecond
	}
	if cfg.OriginGrace == 0 {
		cfg.OriginGrace = DefaultOriginGrace
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	if src, node := cfg.Leveler.Source, cfg.Node; src != nil && cfg.Load.Runnable == nil {
		cfg.Load.Runnable = func() (uint32, error) {
			n, err := src.RunQueue(node)
			return n + 1, err // and the measuring task, which measure takes off
		}
	}
	s := &Server{cfg: cfg, log: cfg.Log, peers: &rpc.PeerCheck{Service: ServiceName, Prefix: "vproc", Peer: "a peer vprocd", NodeName: cfg.NodeName, Log: cfg.Log, CacheFor: holderCacheFor}, nodes: map[uint32]*nodeState{}, conns: map[uint32]*grpc.ClientConn{},
		execs: map[uint32]int{}, load: newLoadState(cfg.Node, cfg.Load), stopping: make(chan struct{}), cp: newClusterProcs(cfg.Node),
		mig: newMover(cfg.Node, cfg.Migrate.Core), lev: newLeveler(cfg.Node, cfg.Leveler)}
	if cfg.Scopes != nil && cfg.WarmGates > 0 {
		s.warm = runner.NewWarm(runner.WarmConfig{PerCaller: cfg.WarmGates, Max: maxWarmGates, Idle: warmGateIdle,
			Prepare: func(pid int, uid uint32) error {
				return cfg.Scopes.Scope(context.Background(), pid, uid, 0)
			}})
	}
	return s
}

// maxWarmGates bounds the gates kept started ahead for all callers
// together; warmGateIdle is how long one waits for its caller's next program.
const (
	maxWarmGates = 32
	warmGateIdle = time.Minute
)

// TrimGates ends the gates kept ahead that waited warmGateIdle in vain (the
// loop calls it every second).
func (s *Server) TrimGates() {
	if s.warm != nil {
		s.warm.Trim()
	}
}

// Membership records that node n is UP or DOWN (a clmsd event, or the
// view at start). A DOWN node's execs end at once with ExitLost.
func (s *Server) Membership(n uint32, up bool) { s.MembershipAt(0, n, up) }

// holderCacheFor is how long vprocd believes which Consul node holds a
// node number without asking clmsd again (each exec, report and signal
// from a peer is checked against it); a membership change of the number
// forgets it at once.
const holderCacheFor = time.Second

// MembershipAt is Membership at clmsd's epoch (0: one after the last).
func (s *Server) MembershipAt(epoch uint64, n uint32, up bool) {
	s.peers.Forget(n)
	s.load.membership(n, up)
	if s.membership(n, up) {
		s.pgMembership(epoch, n, up)
		s.cp.mu.Lock()
		e := s.cp.epoch
		s.cp.mu.Unlock()
		s.migMembership(e)
	}
}

// membership records the change and reports whether it is one.
func (s *Server) membership(n uint32, up bool) (changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.nodes[n]
	if st == nil {
		st = &nodeState{down: make(chan struct{})}
		s.nodes[n] = st
	}
	switch {
	case up && !st.up:
		st.up, changed = true, true
		select {
		case <-st.down:
			st.down = make(chan struct{})
		default:
		}
	case !up:
		changed = st.up
		st.up = false
		select {
		case <-st.down:
		default:
			close(st.down)
		}
		if c := s.conns[n]; c != nil {
			delete(s.conns, n)
			c.Close()
		}
	}
	return changed
}

// upNode returns a channel closed when node n goes DOWN, or a
// FailedPrecondition status when it is unknown or DOWN now.
func (s *Server) upNode(n uint32) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.nodes[n]
	switch {
	case st == nil:
		return nil, status.Errorf(codes.FailedPrecondition, "vproc: node %d is not a member of the cluster", n)
	case !st.up:
		return nil, status.Errorf(codes.FailedPrecondition, "vproc: node %d is DOWN", n)
	}
	return st.down, nil
}

// holderTimeout bounds one lookup of a number's holder or address.
const holderTimeout = rpc.HolderTimeout

// peer returns a connection to node n's vprocd, holding the certificate
// of the node holding n.
func (s *Server) peer(ctx context.Context, n uint32) (*grpc.ClientConn, error) {
	s.mu.Lock()
	c := s.conns[n]
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	name, err := s.peers.Holder(ctx, n)
	if err != nil {
		return nil, err
	}
	if s.cfg.Lookup == nil {
		return nil, fmt.Errorf("vproc: no address lookup for node %d", n)
	}
	lctx, cancel := context.WithTimeout(ctx, holderTimeout)
	addr, err := s.cfg.Lookup(lctx, n)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("vproc: address of node %d's vprocd: %w", n, err)
	}
	c, err = rpc.Dial(ctx, s.cfg.Source, addr, rpc.NodeIdentity(ServiceName, name),
		append([]rpc.DialOption{rpc.WithGRPCOptions(stdiocodec.PeerDialOptions()...)}, s.cfg.DialOptions...)...)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.conns[n]; old != nil {
		c.Close()
		return old, nil
	}
	if st := s.nodes[n]; st == nil || !st.up {
		// Went DOWN while dialling: a connection kept now would
		// outlive the node's execs.
		c.Close()
		return nil, fmt.Errorf("vproc: node %d went down", n)
	}
	s.conns[n] = c
	return c, nil
}

// Close closes the connections to peers.
func (s *Server) Close() {
	if s.warm != nil {
		s.warm.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, c := range s.conns {
		c.Close()
		delete(s.conns, n)
	}
}

// CPID returns the cluster pid of process pid started on node (see
// daemons/vprocd/cpid: node<<22 | pid); 0 when the pair makes none, which
// clmsd's node numbers (1..511) and the kernel's pid_max rule out.
func CPID(node uint32, pid int) int64 {
	c, err := cpid.Make(node, int32(pid))
	if err != nil {
		return 0
	}
	return int64(c)
}
