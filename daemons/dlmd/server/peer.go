package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/dlmd/node"
	"github.com/openssi/openssi/internal/peerlink"
	"github.com/openssi/openssi/internal/rpc"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// ServiceName is the identity peers must present.
const ServiceName = "openssi-dlmd"

// peerOut is the requesting side of this node's link to another node's
// dlmd: requests, owner exits, recovery markers, copies and pings go out;
// replies, effects, marker acknowledgements and pongs come back. The link
// outlives the gRPC streams that carry it (see PeerMessage).
type peerOut struct {
	node uint32
	inc  uint64 // this dlmd's incarnation when the link was made
	link uint64 // names the link; a new peerOut is a new link
	log  *link
	// out keeps log carried (nil for a link no goroutine carries, in
	// tests).
	out *peerlink.Out[*dlmpeerv1.PeerMessage]
	// masterInc is the master's incarnation from its last hello (owned by
	// out's goroutine).
	masterInc uint64
}

// id names the link for the core.
func (p *peerOut) id() node.Link { return node.Link{Node: p.node, Out: true, Inc: p.inc, ID: p.link} }

// close ends the link; its goroutines end soon after (Run joins them).
func (p *peerOut) close() {
	if p.out != nil {
		p.out.Stop()
	}
	p.log.Close()
}

// inStream is the master side of the link another node's dlmd opened to
// us; it outlives the streams that carry it.
type inStream struct {
	node uint32
	inc  uint64
	link uint64
	log  *link
}

// id names the link for the core.
func (in *inStream) id() node.Link { return node.Link{Node: in.node, Inc: in.inc, ID: in.link} }

// out returns the link l names, opening it (and closing the one it
// replaces). The core drops what a link brings once it is not the
// current one.
func (s *Server) out(l node.Link) *peerOut {
	if p := s.peersOut[l.Node]; p != nil {
		if p.inc == l.Inc && p.link == l.ID {
			return p
		}
		p.close()
		s.dropConn(l.Node)
	}
	nd := l.Node
	p := &peerOut{node: nd, inc: l.Inc, link: l.ID, log: newLink()}
	s.peersOut[nd] = p
	log := s.log.WithField("peer", nd)
	deliver := func(m *dlmpeerv1.PeerMessage) {
		s.do(func() { s.core.Step(time.Now(), p.id(), m) })
	}
	p.out = peerlink.Dial(p.log, peerlink.OutConfig[*dlmpeerv1.PeerMessage]{
		Open: func(ctx context.Context, _ *link) (peerlink.Stream[*dlmpeerv1.PeerMessage], uint64, error) {
			return s.openChannel(ctx, p)
		},
		Handler: peerlink.Handler[*dlmpeerv1.PeerMessage]{
			Deliver: deliver,
			Control: func(m *dlmpeerv1.PeerMessage) {
				if pong := m.GetPong(); pong != nil {
					sent := s.base.Add(time.Duration(pong.GetSentNanos()))
					s.do(func() {
						s.core.HeardLease(nd, time.Duration(pong.GetLeaseNanos()), time.Duration(pong.GetLeaseInUseNanos()))
						s.core.Ponged(p.id(), sent)
					})
				} else if m.Msg != nil {
					deliver(m)
				}
			},
			Check: s.checkSender(nd),
		},
		// The pongs keep this node's lease (and the link's
		// acknowledgements) going.
		Ping: func() *dlmpeerv1.PeerMessage {
			return &dlmpeerv1.PeerMessage{Ack: p.log.Received(), Msg: &dlmpeerv1.PeerMessage_Ping{Ping: s.ping(s.mono())}}
		},
		PingEvery: s.core.PingEvery(),
		// A stream that brings no pong for a lease is dead, even when
		// its connection looks open (the master's traffic black-holed):
		// redial. The core fails what waits on a master silent as long
		// (node.Node.Tick). The bound is the cluster's lease as this
		// node knows it when the link opens (published by the loop).
		Silent: time.Duration(s.lease.inUse.Load()),
		Down: func(_ bool, err error) {
			log.WithError(err).Debug("channel to peer down; reconnecting")
			s.dropConn(nd)
		},
		Group: &s.links,
	})
	return p
}

func (s *Server) closePeers() {
	for n, p := range s.peersOut {
		p.close()
		delete(s.peersOut, n)
	}
	for n, in := range s.peersIn {
		in.log.Close()
		delete(s.peersIn, n)
	}
	s.closeConns()
}

// closeConns closes the connections to the other nodes.
func (s *Server) closeConns() {
	s.connMu.Lock()
	for n, c := range s.conns {
		_ = c.Close()
		delete(s.conns, n)
	}
	s.connMu.Unlock()
}

func (s *Server) dropConn(node uint32) {
	s.connMu.Lock()
	if c := s.conns[node]; c != nil {
		_ = c.Close()
		delete(s.conns, node)
	}
	s.connMu.Unlock()
}

// conn returns the gRPC connection to node's dlmd, dialling it.
func (s *Server) conn(ctx context.Context, node uint32) (*grpc.ClientConn, error) {
	s.connMu.Lock()
	c := s.conns[node]
	s.connMu.Unlock()
	if c != nil {
		return c, nil
	}
	addr, err := s.cfg.Lookup(node)
	if err != nil {
		return nil, err
	}
	// Only the dlmd of the node holding the number may answer.
	want, err := s.peerWant(ctx, node)
	if err != nil {
		return nil, err
	}
	c, err = rpc.Dial(ctx, s.cfg.Source, addr, want, s.cfg.Dial...)
	if err != nil {
		return nil, err
	}
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if old := s.conns[node]; old != nil {
		_ = c.Close()
		return old, nil
	}
	s.conns[node] = c
	return c, nil
}

// handshakeTimeout bounds the dial of a channel and, apart, the wait for
// the master's hello: a master that is up but silent fails the attempt
// (and the next is made) instead of holding it.
const handshakeTimeout = 3 * time.Second

// openChannel opens a stream to p's master on ctx and makes the
// handshake: our hello says what we received; the master's, what it
// received, or that it is a new dlmd. It returns the generation to send
// under.
func (s *Server) openChannel(ctx context.Context, p *peerOut) (peerlink.Stream[*dlmpeerv1.PeerMessage], uint64, error) {
	dctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	c, err := s.conn(dctx, p.node)
	cancel()
	if err != nil {
		return nil, 0, err
	}
	// The stream lives as long as ctx, unless no hello comes back in time.
	ctx, cancelStream := context.WithCancel(ctx)
	noHello := time.AfterFunc(handshakeTimeout, cancelStream)
	opened := false
	defer func() {
		if !opened {
			noHello.Stop()
			cancelStream()
		}
	}()
	st, err := dlmpeerv1.NewPeerClient(c).Channel(ctx)
	if err != nil {
		return nil, 0, err
	}
	if ctx.Err() != nil {
		// The link was closed while connecting (this dlmd fenced): no
		// hello in its name may reach the master after the new dlmd's.
		return nil, 0, errors.New("link closed")
	}
	if err := st.Send(&dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Hello{Hello: &dlmpeerv1.PeerHello{Node: s.self, Incarnation: p.inc,
		Features: node.FeatEffectInReply | node.FeatByteNames, Ack: p.log.Received(), Link: p.link, PeerIncarnation: p.masterInc,
		LeaseNanos: s.lease.setting.Load(), LeaseInUseNanos: s.lease.inUse.Load()}}}); err != nil {
		return nil, 0, err
	}
	first, err := st.Recv()
	if !noHello.Stop() {
		return nil, 0, fmt.Errorf("no hello from node %d's dlmd within %v", p.node, handshakeTimeout)
	}
	if err != nil {
		return nil, 0, err
	}
	h := first.GetHello()
	if h == nil {
		return nil, 0, errors.New("the master did not answer with a hello")
	}
	// The connection holds the certificate of p.node's holder (see conn);
	// its hello must be p.node's too.
	if err := node.CheckSender(p.node, first); err != nil {
		return nil, 0, err
	}
	s.do(func() {
		s.core.HeardLease(p.node, time.Duration(h.GetLeaseNanos()), time.Duration(h.GetLeaseInUseNanos()))
	})
	var gen uint64
	if p.masterInc != 0 && h.GetIncarnation() != p.masterInc {
		// A new dlmd on that node: what the old one was sent is gone
		// with it (the recovery its arrival starts sends the requests
		// again).
		gen = p.log.Reset()
		s.do(func() { s.core.PeerRestarted(time.Now(), p.id()) })
	} else {
		gen = p.log.Rewind(h.GetAck())
	}
	p.masterInc = h.GetIncarnation()
	opened = true
	return st, gen, nil
}

// Peer is the peer gRPC service, a thin adapter over Server.
type Peer struct {
	dlmpeerv1.UnimplementedPeerServer
	s *Server
}

// NewPeer returns the peer service of s.
func NewPeer(s *Server) *Peer { return &Peer{s: s} }

// Register adds the service to a gRPC server.
func (p *Peer) Register(g *grpc.Server) { dlmpeerv1.RegisterPeerServer(g, p) }

func checkPeer(ctx context.Context) error {
	if svc, ok := rpc.PeerService(ctx); !ok || svc != ServiceName {
		return status.Errorf(codes.PermissionDenied, "dlm: only %s may call this (caller %q)", ServiceName, svc)
	}
	return nil
}

// Channel serves a channel another node's dlmd opened. The node its hello
// names must be the one its certificate names (see authenticate), and so
// must every message of the channel that names its sender (see
// checkSender): a mismatch is refused and the stream closed.
func (p *Peer) Channel(st grpc.BidiStreamingServer[dlmpeerv1.PeerMessage, dlmpeerv1.PeerMessage]) error {
	if err := checkPeer(st.Context()); err != nil {
		return err
	}
	first, err := st.Recv()
	if err != nil {
		return err
	}
	h := first.GetHello()
	if h == nil || h.GetNode() == 0 {
		return status.Error(codes.InvalidArgument, "dlm: a channel starts with a hello naming the node")
	}
	if err := p.s.authenticate(st.Context(), h.GetNode()); err != nil {
		return err
	}
	return p.s.serveChannel(st, h)
}

// mono is this process's monotonic clock, in nanoseconds (what pings
// carry).
func (s *Server) mono() int64 { return int64(time.Since(s.base)) }

// attach returns the link a hello names, making a new one for a new link
// or a new dlmd, and the generation its new stream sends under (nil: the
// core refuses the stream).
func (s *Server) attach(h *dlmpeerv1.PeerHello) (in *inStream, gen uint64) {
	ok, renewed := s.core.Attach(time.Now(), h.GetNode(), h.GetIncarnation(), h.GetLink(), h.GetFeatures())
	if !ok {
		return nil, 0
	}
	in = s.peersIn[h.GetNode()]
	if renewed || in == nil {
		if in != nil {
			in.log.Close()
		}
		in = &inStream{node: h.GetNode(), inc: h.GetIncarnation(), link: h.GetLink(), log: newLink()}
		s.peersIn[in.node] = in
	}
	ack := h.GetAck()
	if h.GetPeerIncarnation() != s.core.Incarnation() {
		ack = 0 // what it received came from an earlier dlmd of ours
	}
	return in, in.log.Rewind(ack)
}

func (s *Server) serveChannel(st grpc.BidiStreamingServer[dlmpeerv1.PeerMessage, dlmpeerv1.PeerMessage], h *dlmpeerv1.PeerHello) error {
	var in *inStream
	var gen uint64
	var hello *dlmpeerv1.PeerHello
	if err := s.call(st.Context(), func() {
		if in, gen = s.attach(h); in != nil {
			s.core.HeardLease(h.GetNode(), time.Duration(h.GetLeaseNanos()), time.Duration(h.GetLeaseInUseNanos()))
			setting, inUse := s.core.Lease()
			hello = &dlmpeerv1.PeerHello{Node: s.self, Incarnation: s.core.Incarnation(), Ack: in.log.Received(),
				LeaseNanos: int64(setting), LeaseInUseNanos: int64(inUse)}
		}
		s.flush()
	}); err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	if in == nil {
		return status.Errorf(codes.FailedPrecondition, "dlm: node %d has a newer dlmd than incarnation %d", h.GetNode(), h.GetIncarnation())
	}
	if err := st.Send(&dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Hello{Hello: hello}}); err != nil {
		return nil
	}
	deliver := func(m *dlmpeerv1.PeerMessage) { s.do(func() { s.core.Step(time.Now(), in.id(), m) }) }
	err := peerlink.Carry(st.Context(), in.log, st, gen, peerlink.Handler[*dlmpeerv1.PeerMessage]{
		Deliver: deliver,
		Control: func(m *dlmpeerv1.PeerMessage) {
			if p := m.GetPing(); p != nil {
				s.do(func() {
					s.core.HeardLease(in.node, time.Duration(p.GetLeaseNanos()), time.Duration(p.GetLeaseInUseNanos()))
					if s.core.Pinged(time.Now(), in.node) {
						in.log.PushOnce(&dlmpeerv1.PeerMessage{Ack: in.log.Received(), Msg: &dlmpeerv1.PeerMessage_Pong{Pong: s.ping(p.GetSentNanos())}})
					}
				})
			} else if m.Msg != nil {
				deliver(m)
			}
		},
		Check: s.checkSender(in.node),
	})
	if status.Code(err) == codes.PermissionDenied {
		return err
	}
	if errors.Is(err, peerlink.ErrLostMessages) {
		return status.Errorf(codes.DataLoss, "from node %d: %v", in.node, err)
	}
	// The stream broke, or the link was closed (this dlmd fenced, or the
	// link was replaced) or a newer stream carries it: the other side
	// redials and meets what is there now.
	return nil
}

// Dump returns the resources this node masters (a page of them when the
// request has a limit).
func (p *Peer) Dump(ctx context.Context, r *dlmpeerv1.DumpRequest) (*dlmpeerv1.DumpReply, error) {
	if err := checkPeer(ctx); err != nil {
		return nil, err
	}
	var out []*dlmv1.Resource
	if err := p.s.call(ctx, func() {
		out = p.s.core.DumpPage(r.GetLockspace(), r.GetAfterLockspace(), string(r.GetAfterName()), int(min(r.GetLimit(), maxPageResources)))
	}); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &dlmpeerv1.DumpReply{Resources: out}, nil
}

// Edges returns the wait-for edges of this node's masters.
func (p *Peer) Edges(ctx context.Context, _ *dlmpeerv1.EdgesRequest) (*dlmpeerv1.EdgesReply, error) {
	if err := checkPeer(ctx); err != nil {
		return nil, err
	}
	var out []*dlmpeerv1.Edge
	if err := p.s.call(ctx, func() { out = p.s.core.Edges() }); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &dlmpeerv1.EdgesReply{Edges: out}, nil
}

// Victims fails deadlock victims pending on this node's masters. Only the
// coordinator of the detection (the lowest member, see
// node.Node.Coordinator) may: the victims name requests of any node, and
// failing them is the coordinator's call alone.
func (p *Peer) Victims(ctx context.Context, r *dlmpeerv1.VictimsRequest) (*dlmpeerv1.VictimsReply, error) {
	if err := checkPeer(ctx); err != nil {
		return nil, err
	}
	var members []uint32
	if err := p.s.call(ctx, func() { members = p.s.core.Members() }); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if len(members) == 0 {
		return nil, status.Error(codes.Unavailable, "dlm: no members yet")
	}
	if err := p.s.requireNode(ctx, members[0], fmt.Sprintf("it sends deadlock victims, which only the coordinator node %d may", members[0])); err != nil {
		return nil, err
	}
	if err := p.s.call(ctx, func() { p.s.core.Victims(time.Now(), r.GetVictims()) }); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &dlmpeerv1.VictimsReply{}, nil
}

// deadlockLoop runs on every node; the lowest member of the directory
// does the work (see node.DeadlockRound): it fetches every master's
// wait-for edges and hands the victims to their masters.
func (s *Server) deadlockLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.DeadlockInterval)
	defer t.Stop()
	var prev node.EdgeSet
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var err error
		if prev, err = s.detectOnce(ctx, prev); err != nil {
			s.log.WithError(err).Debug("deadlock detection round skipped")
		}
	}
}

// detectOnce runs a round of detection on the edges also seen in the
// round before (prev); it returns the edges it saw (nil when this node
// is not the coordinator or the round failed).
func (s *Server) detectOnce(ctx context.Context, prev node.EdgeSet) (node.EdgeSet, error) {
	var members []uint32
	var local []*dlmpeerv1.Edge
	if err := s.call(ctx, func() {
		if members = s.core.Coordinator(); members != nil {
			local = s.core.Edges()
		}
	}); err != nil || len(members) == 0 {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DeadlockInterval)
	defer cancel()
	all := local
	for _, n := range members[1:] {
		c, err := s.conn(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("edges of node %d: %w", n, err)
		}
		r, err := dlmpeerv1.NewPeerClient(c).Edges(ctx, &dlmpeerv1.EdgesRequest{})
		if err != nil {
			return nil, fmt.Errorf("edges of node %d: %w", n, err)
		}
		all = append(all, r.GetEdges()...)
	}
	seen, victims := node.DeadlockRound(prev, all)
	if len(victims) == 0 {
		return seen, nil
	}
	s.log.WithField("victims", len(victims)).Info("deadlock: refusing the youngest request of each cycle")
	_ = s.call(ctx, func() { s.core.Victims(time.Now(), victims) })
	for _, n := range members[1:] {
		c, err := s.conn(ctx, n)
		if err != nil {
			continue
		}
		if _, err := dlmpeerv1.NewPeerClient(c).Victims(ctx, &dlmpeerv1.VictimsRequest{Victims: victims}); err != nil {
			s.log.WithError(err).WithFields(logrus.Fields{"node": n}).Warn("deadlock: victims not delivered")
		}
	}
	return seen, nil
}
