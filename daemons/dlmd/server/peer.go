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
	"github.com/openssi/openssi/internal/rpc"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// ServiceName is the identity peers must present.
const ServiceName = "openssi-dlmd"

// longLived is the deadline of a channel (the rpc layer gives streams
// without one its default call timeout).
const longLived = 100 * 365 * 24 * time.Hour

// peerOut is the requesting side of this node's link to another node's
// dlmd: requests, owner exits, recovery markers, copies and pings go out;
// replies, effects, marker acknowledgements and pongs come back. The link
// outlives the gRPC streams that carry it (see PeerMessage).
type peerOut struct {
	node uint32
	inc  uint64 // this dlmd's incarnation when the link was made
	link uint64 // names the link; a new peerOut is a new link
	log  *sendLog
	recv recvState
	// masterInc is the master's incarnation from its last hello (owned by
	// the connecting goroutine).
	masterInc uint64
	done      chan struct{}
}

// id names the link for the core.
func (p *peerOut) id() node.Link { return node.Link{Node: p.node, Out: true, Inc: p.inc, ID: p.link} }

func (p *peerOut) close() {
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	p.log.close()
}

// inStream is the master side of the link another node's dlmd opened to
// us; it outlives the streams that carry it.
type inStream struct {
	node uint32
	inc  uint64
	link uint64
	log  *sendLog
	recv recvState
}

// id names the link for the core.
func (in *inStream) id() node.Link { return node.Link{Node: in.node, Inc: in.inc, ID: in.link} }

// out returns the link l names, opening it (and closing the one it
// replaces).
func (s *Server) out(l node.Link) *peerOut {
	if p := s.peersOut[l.Node]; p != nil {
		if p.inc == l.Inc && p.link == l.ID {
			return p
		}
		p.close()
		s.dropConn(l.Node)
	}
	p := &peerOut{node: l.Node, inc: l.Inc, link: l.ID, log: newSendLog(), done: make(chan struct{})}
	s.peersOut[l.Node] = p
	go s.connect(p)
	return p
}

func (s *Server) closePeers() {
	for n, p := range s.peersOut {
		p.close()
		delete(s.peersOut, n)
	}
	for n, in := range s.peersIn {
		in.log.close()
		delete(s.peersIn, n)
	}
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
	c, err = rpc.Dial(ctx, s.cfg.Source, addr, ServiceName, s.cfg.Dial...)
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

// connect keeps the link to p.node carried by a stream until p is closed.
func (s *Server) connect(p *peerOut) {
	delay := 20 * time.Millisecond
	log := s.log.WithField("peer", p.node)
	for {
		select {
		case <-p.done:
			return
		case <-s.stop:
			return
		default:
		}
		up, err := s.runChannel(p)
		select {
		case <-p.done:
			return
		case <-s.stop:
			return
		default:
		}
		log.WithError(err).Debug("channel to peer down; reconnecting")
		s.dropConn(p.node)
		if up {
			// The link was carried: redial promptly, as the lease wants.
			delay = 20 * time.Millisecond
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-p.done:
			t.Stop()
			return
		}
		if delay < time.Second {
			delay *= 2
		}
	}
}

// ackEvery is how many messages a link delivers before pump acknowledges
// them in a message of its own; pings and pongs (every Lease/10) carry an
// acknowledgement anyway, so the other side keeps at most that much.
const ackEvery = 256

// pump sends what log hands out for generation gen until the stream ends,
// acknowledging along what recv has delivered.
func pump(ctx context.Context, log *sendLog, gen uint64, recv *recvState, send func(*dlmv1.PeerMessage) error) {
	var acked uint64
	for {
		items, ok := log.take(gen, ctx.Done())
		if !ok {
			return
		}
		if n := recv.received(); n >= acked+ackEvery {
			acked = n
			if err := send(&dlmv1.PeerMessage{Ack: n}); err != nil {
				return
			}
		}
		for _, m := range items {
			if err := send(m); err != nil {
				return
			}
		}
	}
}

// runChannel carries p's link on one stream until the stream breaks. up
// reports whether the stream got as far as the master's hello.
func (s *Server) runChannel(p *peerOut) (up bool, err error) {
	dctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	c, err := s.conn(dctx, p.node)
	cancel()
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), longLived)
	defer cancel()
	go func() {
		select {
		case <-p.done:
		case <-s.stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	st, err := dlmv1.NewPeerClient(c).Channel(ctx)
	if err != nil {
		return false, err
	}
	select {
	case <-p.done:
		// The link was closed while connecting (this dlmd fenced): no
		// hello in its name may reach the master after the new dlmd's.
		return false, errors.New("link closed")
	default:
	}
	if err := st.Send(&dlmv1.PeerMessage{Msg: &dlmv1.PeerMessage_Hello{Hello: &dlmv1.PeerHello{Node: s.self, Incarnation: p.inc,
		Features: node.FeatEffectInReply, Ack: p.recv.received(), Link: p.link, PeerIncarnation: p.masterInc}}}); err != nil {
		return false, err
	}
	first, err := st.Recv()
	if err != nil {
		return false, err
	}
	h := first.GetHello()
	if h == nil {
		return false, errors.New("the master did not answer with a hello")
	}
	var gen uint64
	if p.masterInc != 0 && h.GetIncarnation() != p.masterInc {
		// A new dlmd on that node: what the old one was sent is gone
		// with it (the recovery its arrival starts sends the requests
		// again).
		gen = p.log.reset()
		p.recv.reset()
		s.do(func() { s.core.PeerRestarted(time.Now(), p.id()) })
	} else {
		gen = p.log.rewind(h.GetAck())
	}
	p.masterInc = h.GetIncarnation()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		defer cancel()
		pump(ctx, p.log, gen, &p.recv, st.Send)
	}()
	go s.ping(ctx, p)
	defer func() { <-sent }()
	for {
		m, err := st.Recv()
		if err != nil {
			cancel()
			return true, err
		}
		if a := m.GetAck(); a != 0 {
			p.log.ack(a)
		}
		if pong := m.GetPong(); pong != nil {
			sent := s.base.Add(time.Duration(pong.GetSentNanos()))
			s.do(func() { s.core.Ponged(p.id(), sent) })
			continue
		}
		if m.Msg == nil {
			continue
		}
		if p.recv.accept(m, func() { s.do(func() { s.core.Step(time.Now(), p.id(), m) }) }) == gap {
			cancel()
			return true, fmt.Errorf("message %d from node %d after %d: the stream lost messages", m.GetSeq(), p.node, p.recv.received())
		}
		select {
		case <-s.stop:
			cancel()
			return true, errors.New("stopping")
		default:
		}
	}
}

// ping sends p's master a ping every lease/10 while the stream lasts: the
// pongs keep this node's lease (and the link's acknowledgements) going.
func (s *Server) ping(ctx context.Context, p *peerOut) {
	t := time.NewTicker(s.core.PingEvery())
	defer t.Stop()
	for {
		p.log.pushOnce(&dlmv1.PeerMessage{Ack: p.recv.received(), Msg: &dlmv1.PeerMessage_Ping{Ping: &dlmv1.Ping{SentNanos: s.mono()}}})
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Peer is the peer gRPC service, a thin adapter over Server.
type Peer struct {
	dlmv1.UnimplementedPeerServer
	s *Server
}

// NewPeer returns the peer service of s.
func NewPeer(s *Server) *Peer { return &Peer{s: s} }

// Register adds the service to a gRPC server.
func (p *Peer) Register(g *grpc.Server) { dlmv1.RegisterPeerServer(g, p) }

func checkPeer(ctx context.Context) error {
	if svc, ok := rpc.PeerService(ctx); !ok || svc != ServiceName {
		return status.Errorf(codes.PermissionDenied, "dlm: only %s may call this (caller %q)", ServiceName, svc)
	}
	return nil
}

// Channel serves a channel another node's dlmd opened.
func (p *Peer) Channel(st grpc.BidiStreamingServer[dlmv1.PeerMessage, dlmv1.PeerMessage]) error {
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
	return p.s.serveChannel(st, h)
}

// mono is this process's monotonic clock, in nanoseconds (what pings
// carry).
func (s *Server) mono() int64 { return int64(time.Since(s.base)) }

// attach returns the link a hello names, making a new one for a new link
// or a new dlmd, and the generation its new stream sends under (nil: the
// core refuses the stream).
func (s *Server) attach(h *dlmv1.PeerHello) (in *inStream, gen uint64) {
	ok, renewed := s.core.Attach(time.Now(), h.GetNode(), h.GetIncarnation(), h.GetLink(), h.GetFeatures())
	if !ok {
		return nil, 0
	}
	in = s.peersIn[h.GetNode()]
	if renewed || in == nil {
		if in != nil {
			in.log.close()
		}
		in = &inStream{node: h.GetNode(), inc: h.GetIncarnation(), link: h.GetLink(), log: newSendLog()}
		s.peersIn[in.node] = in
	}
	ack := h.GetAck()
	if h.GetPeerIncarnation() != s.core.Incarnation() {
		ack = 0 // what it received came from an earlier dlmd of ours
	}
	return in, in.log.rewind(ack)
}

func (s *Server) serveChannel(st grpc.BidiStreamingServer[dlmv1.PeerMessage, dlmv1.PeerMessage], h *dlmv1.PeerHello) error {
	var in *inStream
	var gen uint64
	var hello *dlmv1.PeerHello
	if err := s.call(st.Context(), func() {
		if in, gen = s.attach(h); in != nil {
			hello = &dlmv1.PeerHello{Node: s.self, Incarnation: s.core.Incarnation(), Ack: in.recv.received()}
		}
		s.flush()
	}); err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	if in == nil {
		return status.Errorf(codes.FailedPrecondition, "dlm: node %d has a newer dlmd than incarnation %d", h.GetNode(), h.GetIncarnation())
	}
	if err := st.Send(&dlmv1.PeerMessage{Msg: &dlmv1.PeerMessage_Hello{Hello: hello}}); err != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(st.Context())
	defer cancel()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		defer cancel()
		pump(ctx, in.log, gen, &in.recv, st.Send)
	}()
	defer func() { cancel(); <-sent }()
	for {
		m, err := st.Recv()
		if err != nil {
			return nil
		}
		if ctx.Err() != nil {
			// The link was closed (this dlmd fenced, or the link was
			// replaced) or a newer stream carries it: end this one,
			// pings included, so that the other side redials and meets
			// what is there now.
			return nil
		}
		if a := m.GetAck(); a != 0 {
			in.log.ack(a)
		}
		if p := m.GetPing(); p != nil {
			s.do(func() {
				if s.core.Pinged(time.Now(), in.node) {
					in.log.pushOnce(&dlmv1.PeerMessage{Ack: in.recv.received(), Msg: &dlmv1.PeerMessage_Pong{Pong: &dlmv1.Ping{SentNanos: p.GetSentNanos()}}})
				}
			})
			continue
		}
		if m.Msg == nil {
			continue
		}
		if in.recv.accept(m, func() { s.do(func() { s.core.Step(time.Now(), in.id(), m) }) }) == gap {
			return status.Errorf(codes.DataLoss, "dlm: message %d from node %d after %d: the stream lost messages", m.GetSeq(), in.node, in.recv.received())
		}
	}
}

// Dump returns the resources this node masters.
func (p *Peer) Dump(ctx context.Context, r *dlmv1.DumpRequest) (*dlmv1.DumpReply, error) {
	if err := checkPeer(ctx); err != nil {
		return nil, err
	}
	var out []*dlmv1.Resource
	if err := p.s.call(ctx, func() { out = p.s.core.Dump(r.GetLockspace()) }); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &dlmv1.DumpReply{Resources: out}, nil
}

// Edges returns the wait-for edges of this node's masters.
func (p *Peer) Edges(ctx context.Context, _ *dlmv1.EdgesRequest) (*dlmv1.EdgesReply, error) {
	if err := checkPeer(ctx); err != nil {
		return nil, err
	}
	var out []*dlmv1.Edge
	if err := p.s.call(ctx, func() { out = p.s.core.Edges() }); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &dlmv1.EdgesReply{Edges: out}, nil
}

// Victims fails deadlock victims pending on this node's masters.
func (p *Peer) Victims(ctx context.Context, r *dlmv1.VictimsRequest) (*dlmv1.VictimsReply, error) {
	if err := checkPeer(ctx); err != nil {
		return nil, err
	}
	if err := p.s.call(ctx, func() { p.s.core.Victims(time.Now(), r.GetVictims()) }); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &dlmv1.VictimsReply{}, nil
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
	var local []*dlmv1.Edge
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
		r, err := dlmv1.NewPeerClient(c).Edges(ctx, &dlmv1.EdgesRequest{})
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
		if _, err := dlmv1.NewPeerClient(c).Victims(ctx, &dlmv1.VictimsRequest{Victims: victims}); err != nil {
			s.log.WithError(err).WithFields(logrus.Fields{"node": n}).Warn("deadlock: victims not delivered")
		}
	}
	return seen, nil
}
