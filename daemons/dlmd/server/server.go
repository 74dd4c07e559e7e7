// Package server is dlmd's shell around the pure protocol core
// (daemons/dlmd/node, which holds the lock tables, the directory, the
// copies, the recovery and the lease): one goroutine owns the core and
// feeds it the client sessions' requests (local.go), what the peer links
// bring (peer.go), membership events and ticks, each with the time; after
// each step it carries out what the core's Ready asks for: messages on
// the links, messages to sessions, links and sessions to close. The shell
// owns the links, the gRPC streams and the clock, nothing of the protocol.
package server

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/openssi/openssi/daemons/dlmd/node"
	"github.com/openssi/openssi/internal/logging"
	"github.com/openssi/openssi/internal/rpc"
)

// Config is what the shell needs from main.
type Config struct {
	// Node is this node's number.
	Node uint32
	// Incarnation distinguishes this run of dlmd from earlier ones on the
	// node (main uses the start time in nanoseconds).
	Incarnation uint64
	// DeadlockInterval is how often the coordinator (the lowest member)
	// looks for deadlocks across the cluster. Default 1s.
	DeadlockInterval time.Duration
	// Source holds the inter-node TLS certificates.
	Source rpc.Source
	// Lookup returns the "ip:port" of node's dlmd (rpc.LookupRegistered).
	Lookup func(node uint32) (string, error)
	// NodeName returns the Consul node name holding node number n: the
	// holder of its claim, as clmsd's API reports it ("" or an error:
	// unknown). A peer is believed to be node n only with a certificate
	// naming that node (identity "openssi-dlmd.<name>"), both when it
	// calls (its hello) and when this node dials it. nil believes no
	// peer.
	NodeName func(ctx context.Context, n uint32) (string, error)
	// Dial adds options to the peer connections (tests use it to cut
	// the network).
	Dial []rpc.DialOption
	// Lease is this node's setting of how long its locks stay valid
	// without contact with a majority of the members' dlmd; the lease in
	// use is the cluster's, the largest of the members' settings (see
	// package node). Default 1s.
	Lease time.Duration
	// Toss is how long a master keeps a resource after its last lock
	// went, and a node remembers a master it does not use. Default 10s.
	Toss time.Duration
	// Limits bound what the local clients may make this node hold (see
	// node.Limits); zero values mean no limit.
	Limits node.Limits
	// MaxSessionsPerUID bounds the sessions one uid (root included) has
	// open on this node at once; 0 means no limit.
	MaxSessionsPerUID int
	// Lockspaces keeps the lockspaces' owners (Consul KV).
	Lockspaces LockspaceStore
	// MaxLockspacesPerUID bounds the lockspaces a non-root uid owns
	// (created explicitly or on first use). Default
	// DefaultMaxLockspacesPerUID.
	MaxLockspacesPerUID int
	// LockspaceGrace is how long a lockspace made on first use stays
	// without locks before Sweep removes its record. Default
	// DefaultLockspaceGrace.
	LockspaceGrace time.Duration
	// Log is the daemon's logger.
	Log logrus.FieldLogger
}

// tick is the granularity of request timeouts and of the watchdog beat.
const tick = 20 * time.Millisecond

// Server is the dlmd shell.
type Server struct {
	cfg   Config
	self  uint32
	log   logrus.FieldLogger
	ops   chan func()
	stop  chan struct{}
	beat  func()
	ready func()
	// leaving: Leave was called; sessions ended since end with
	// Unavailable ("stopping") rather than a plain end of stream.
	leaving atomic.Bool

	// Owned by the loop.
	core     *node.Node
	sessions map[uint64]*session
	peersOut map[uint32]*peerOut
	peersIn  map[uint32]*inStream

	// base is the origin of s.mono().
	base time.Time
	// wakeAt is when the extra tick is armed for (see Run).
	wakeAt time.Time
	// lease is the core's lease, for the links (see lease.go).
	lease leaseShare

	// refusals: the impersonations refused so far, logged once.
	refusals logging.Once

	connMu sync.Mutex
	conns  map[uint32]*grpc.ClientConn
	// links counts the goroutines of the links to other nodes: Run
	// joins them when it stops.
	links sync.WaitGroup
	// receivers counts the sessions' receiving goroutines (see
	// API.Session): Run ends the sessions and joins them when it stops.
	receivers sync.WaitGroup

	// sessMu guards uidSessions, the sessions each uid has open here
	// (Config.MaxSessionsPerUID), counted by every API of the Server.
	sessMu      sync.Mutex
	uidSessions map[uint32]int
}

// New returns a shell; Run starts it.
func New(cfg Config) *Server {
	if cfg.DeadlockInterval <= 0 {
		cfg.DeadlockInterval = time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = time.Second
	}
	if cfg.Toss <= 0 {
		cfg.Toss = 10 * time.Second
	}
	if cfg.MaxLockspacesPerUID <= 0 {
		cfg.MaxLockspacesPerUID = DefaultMaxLockspacesPerUID
	}
	s := &Server{
		cfg: cfg, self: cfg.Node, log: cfg.Log,
		ops: make(chan func(), 4096), stop: make(chan struct{}),
		core: node.New(node.Config{Node: cfg.Node, Incarnation: cfg.Incarnation, Lease: cfg.Lease, Toss: cfg.Toss, Limits: cfg.Limits,
			Tick: tick, Log: cfg.Log}),
		sessions: map[uint64]*session{}, peersOut: map[uint32]*peerOut{}, peersIn: map[uint32]*inStream{},
		conns: map[uint32]*grpc.ClientConn{}, base: time.Now(), uidSessions: map[uint32]int{},
	}
	s.publishLease()
	return s
}

// do runs f on the loop; it reports false when the loop has stopped.
func (s *Server) do(f func()) bool {
	select {
	case s.ops <- f:
		return true
	case <-s.stop:
		return false
	}
}

// call runs f on the loop and waits for it.
func (s *Server) call(ctx context.Context, f func()) error {
	done := make(chan struct{})
	if !s.do(func() { f(); close(done) }) {
		return fmt.Errorf("dlm: dlmd is stopping")
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return fmt.Errorf("dlm: dlmd is stopping")
	}
}

// Run is the loop. beat feeds the watchdog; ready is called once the first
// recovery has installed a directory (the node can grant). It returns when
// ctx ends.
func (s *Server) Run(ctx context.Context, beat, ready func()) error {
	s.beat, s.ready = beat, ready
	var detector sync.WaitGroup
	detector.Add(1)
	go func() {
		defer detector.Done()
		s.deadlockLoop(ctx)
	}()
	t := time.NewTicker(tick)
	defer t.Stop()
	// wake is the extra tick the core asks for between the regular ones
	// (see node.Node.NextWake).
	wake := time.NewTimer(time.Hour)
	wake.Stop()
	defer wake.Stop()
	// Stop the links and end the sessions, let their goroutines and the
	// deadlock detector past s.do and s.call, join them, and close the
	// connections a link may have dialled meanwhile.
	defer s.closeConns()
	defer detector.Wait()
	defer s.receivers.Wait()
	defer s.links.Wait()
	defer close(s.stop)
	defer s.closeSessions()
	defer s.closePeers()
	for {
		if at := s.core.NextWake(); !at.IsZero() && !at.Equal(s.wakeAt) {
			s.wakeAt = at
			wake.Reset(time.Until(at))
		}
		select {
		case <-ctx.Done():
			return nil
		case now := <-wake.C:
			s.core.Tick(now)
			s.flush()
		case f := <-s.ops:
			f()
			// Run what queued up without re-arming the select, then
			// carry out what it all asked of the core.
			for n := 0; n < 256; n++ {
				select {
				case f := <-s.ops:
					f()
					continue
				default:
				}
				break
			}
			s.flush()
		case now := <-t.C:
			if s.beat != nil {
				s.beat()
			}
			s.core.Tick(now)
			s.flush()
		}
	}
}

// Leave says goodbye to the peers (see node.Node.Leave) and waits, at most
// until ctx ends, for the links to the members to have sent it: the
// members then recover without this node at once instead of fencing or
// waiting for its lease. Call it before the servers stop.
func (s *Server) Leave(ctx context.Context) error {
	var logs []*link
	s.leaving.Store(true)
	if err := s.call(ctx, func() {
		s.core.Leave(time.Now())
		s.flush()
		for _, p := range s.peersOut {
			logs = append(logs, p.log)
		}
	}); err != nil {
		return err
	}
	for _, l := range logs {
		for l.Pending() > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

// flush carries out what the core asks for.
func (s *Server) flush() {
	s.publishLease()
	if !s.core.HasReady() {
		return
	}
	rd := s.core.Ready()
	for _, m := range rd.Messages {
		if m.Link.Out {
			s.out(m.Link).log.Push(m.Msg)
			continue
		}
		if in := s.peersIn[m.Link.Node]; in != nil && in.inc == m.Link.Inc && in.link == m.Link.ID {
			in.log.Push(m.Msg)
		}
	}
	for _, sm := range rd.Sessions {
		if ss := s.sessions[sm.Session]; ss != nil {
			ss.send(sm.Msg)
		}
	}
	for _, e := range rd.Ended {
		if ss := s.sessions[e.Session]; ss != nil {
			ss.lost.Store(e.Lost)
			ss.q.close()
			delete(s.sessions, e.Session)
		}
	}
	for _, l := range rd.Closed {
		if l.Out {
			if p := s.peersOut[l.Node]; p != nil && p.inc == l.Inc && p.link == l.ID {
				p.close()
				delete(s.peersOut, l.Node)
				s.dropConn(l.Node)
			}
			continue
		}
		if in := s.peersIn[l.Node]; in != nil && in.inc == l.Inc && in.link == l.ID {
			in.log.Close()
			delete(s.peersIn, l.Node)
		}
	}
	if rd.Installed && s.ready != nil {
		s.ready()
	}
}

// closeSessions ends the sessions' streams when the loop stops: their
// handlers return, and with them gRPC ends their receiving goroutines.
func (s *Server) closeSessions() {
	for id, ss := range s.sessions {
		ss.q.close()
		delete(s.sessions, id)
	}
}

// Membership applies a membership event (from clmsd).
func (s *Server) Membership(epoch uint64, node uint32, up bool) {
	s.do(func() { s.core.Membership(time.Now(), epoch, node, up) })
}

// Start installs the view the daemon starts from and runs the first
// recovery.
func (s *Server) Start(epoch uint64, up []uint32) {
	s.do(func() { s.core.Start(time.Now(), epoch, up) })
}
