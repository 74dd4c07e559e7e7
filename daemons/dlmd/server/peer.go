package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
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
	// contact is s.mono() when the master's latest pong was pinged.
	contact atomic.Int64
}

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
	// features: the PeerHello feature bits of the requesting node.
	features uint32
	log      *link
	// since is when the link was made here.
	since time.Time
}

// staleLinkWindow is how long after a node's new dlmd made a link here a
// stream of an earlier dlmd of the node (a lower incarnation) is taken
// for one that was still connecting when that dlmd fenced, and refused.
// Later, a lower incarnation is a restart whose clock went back.
const staleLinkWindow = 5 * time.Second

// out returns the link to node, opening it.
func (s *Server) out(node uint32) *peerOut {
	if p := s.peersOut[node]; p != nil {
		return p
	}
	s.nextLink++
	p := &peerOut{node: node, inc: s.cfg.Incarnation, link: s.nextLink, log: newLink()}
	s.peersOut[node] = p
	log := s.log.WithField("peer", node)
	deliver := func(m *dlmpeerv1.PeerMessage) {
		s.do(func() {
			if s.peersOut[node] == p { // not for an earlier dlmd of ours
				s.onFromMaster(node, m)
			}
		})
	}
	p.out = peerlink.Dial(p.log, peerlink.OutConfig[*dlmpeerv1.PeerMessage]{
		Open: func(ctx context.Context, _ *link) (peerlink.Stream[*dlmpeerv1.PeerMessage], uint64, error) {
			return s.openChannel(ctx, p)
		},
		Handler: peerlink.Handler[*dlmpeerv1.PeerMessage]{
			Deliver: deliver,
			Control: func(m *dlmpeerv1.PeerMessage) {
				if pong := m.GetPong(); pong != nil {
					if t := pong.GetSentNanos(); t > p.contact.Load() {
						p.contact.Store(t)
					}
				} else if m.Msg != nil {
					deliver(m)
				}
			},
		},
		// The pongs keep this node's lease (and the link's
		// acknowledgements) going.
		Ping: func() *dlmpeerv1.PeerMessage {
			return &dlmpeerv1.PeerMessage{Ack: p.log.Received(), Msg: &dlmpeerv1.PeerMessage_Ping{Ping: &dlmpeerv1.Ping{SentNanos: s.mono()}}}
		},
		PingEvery: s.pingEvery(),
		Down: func(_ bool, err error) {
			log.WithError(err).Debug("channel to peer down; reconnecting")
			s.dropConn(node)
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

// openChannel opens a stream to p's master on ctx and makes the
// handshake: our hello says what we received; the master's, what it
// received, or that it is a new dlmd. It returns the generation to send
// under.
func (s *Server) openChannel(ctx context.Context, p *peerOut) (peerlink.Stream[*dlmpeerv1.PeerMessage], uint64, error) {
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	c, err := s.conn(dctx, p.node)
	cancel()
	if err != nil {
		return nil, 0, err
	}
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
		Features: featEffectInReply, Ack: p.log.Received(), Link: p.link, PeerIncarnation: p.masterInc}}}); err != nil {
		return nil, 0, err
	}
	first, err := st.Recv()
	if err != nil {
		return nil, 0, err
	}
	h := first.GetHello()
	if h == nil {
		return nil, 0, errors.New("the master did not answer with a hello")
	}
	var gen uint64
	if p.masterInc != 0 && h.GetIncarnation() != p.masterInc {
		// A new dlmd on that node: what the old one was sent is gone
		// with it (the recovery its arrival starts sends the requests
		// again).
		gen = p.log.Reset()
		s.do(func() { s.onConnected(p) })
	} else {
		gen = p.log.Rewind(h.GetAck())
	}
	p.masterInc = h.GetIncarnation()
	return st, gen, nil
}

// onConnected handles a new dlmd on p's node (the old one fenced or
// restarted) met during a recovery.
func (s *Server) onConnected(p *peerOut) {
	if s.peersOut[p.node] != p {
		return
	}
	s.newIncarnation(p.node)
}

// newIncarnation runs the recovery in progress again, in the next round,
// when node has a new dlmd: the marker sent to the earlier one is gone
// with it, and what the recovery took from it (its acknowledgement,
// copies, end of copies) is stale. The new dlmd joins the new round; a
// recovery finished on the earlier dlmd's word would leave it waiting
// forever, or rebuild locks nobody holds.
func (s *Server) newIncarnation(node uint32) {
	if s.rec == nil || !slices.Contains(s.rec.barrier.Members, node) {
		return
	}
	s.log.WithFields(logrus.Fields{"node": node, "recovery": s.rec.id.String()}).Info("a new dlmd joins during the recovery: recovering again")
	s.startRecovery(directory.ID{Epoch: s.rec.id.Epoch, Round: s.rec.id.Round + 1})
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

// Channel serves a channel another node's dlmd opened.
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
	return p.s.serveChannel(st, h)
}

// attach returns the link a hello names, making a new one for a new link
// or a new dlmd, and the generation its new stream sends under.
func (s *Server) attach(h *dlmpeerv1.PeerHello) (in *inStream, gen uint64) {
	in = s.peersIn[h.GetNode()]
	if in != nil && h.GetIncarnation() < in.inc && time.Since(in.since) < staleLinkWindow {
		// A stream of an earlier dlmd of the node, overtaken by its
		// new dlmd's: it must not take the new dlmd's place.
		return nil, 0
	}
	if in == nil || in.inc != h.GetIncarnation() || in.link != h.GetLink() {
		renewed := in != nil && in.inc != h.GetIncarnation()
		if in != nil {
			in.log.Close()
		}
		in = &inStream{node: h.GetNode(), inc: h.GetIncarnation(), link: h.GetLink(), log: newLink(), since: time.Now()}
		s.peersIn[in.node] = in
		if renewed {
			s.newIncarnation(in.node)
		}
	}
	in.features = h.GetFeatures()
	ack := h.GetAck()
	if h.GetPeerIncarnation() != s.cfg.Incarnation {
		ack = 0 // what it received came from an earlier dlmd of ours
	}
	return in, in.log.Rewind(ack)
}

// fromRequester hands on what a link brought, unless the link was closed
// or replaced since (its messages were for an earlier dlmd of ours, or
// came from an earlier one of the peer's).
func (s *Server) fromRequester(in *inStream, m *dlmpeerv1.PeerMessage) {
	if s.peersIn[in.node] == in {
		s.onFromRequester(in, m)
	}
}

func (s *Server) serveChannel(st grpc.BidiStreamingServer[dlmpeerv1.PeerMessage, dlmpeerv1.PeerMessage], h *dlmpeerv1.PeerHello) error {
	var in *inStream
	var gen uint64
	var hello *dlmpeerv1.PeerHello
	if err := s.call(st.Context(), func() {
		if in, gen = s.attach(h); in != nil {
			hello = &dlmpeerv1.PeerHello{Node: s.self, Incarnation: s.cfg.Incarnation, Ack: in.log.Received()}
		}
	}); err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	if in == nil {
		return status.Errorf(codes.FailedPrecondition, "dlm: node %d has a newer dlmd than incarnation %d", h.GetNode(), h.GetIncarnation())
	}
	if err := st.Send(&dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Hello{Hello: hello}}); err != nil {
		return nil
	}
	deliver := func(m *dlmpeerv1.PeerMessage) { s.do(func() { s.fromRequester(in, m) }) }
	err := peerlink.Carry(st.Context(), in.log, st, gen, peerlink.Handler[*dlmpeerv1.PeerMessage]{
		Deliver: deliver,
		Control: func(m *dlmpeerv1.PeerMessage) {
			if p := m.GetPing(); p != nil {
				if s.pong(in.node) {
					in.log.PushOnce(&dlmpeerv1.PeerMessage{Ack: in.log.Received(), Msg: &dlmpeerv1.PeerMessage_Pong{Pong: &dlmpeerv1.Ping{SentNanos: p.GetSentNanos()}}})
				}
			} else if m.Msg != nil {
				deliver(m)
			}
		},
	})
	if errors.Is(err, peerlink.ErrLostMessages) {
		return status.Errorf(codes.DataLoss, "from node %d: %v", in.node, err)
	}
	// The stream broke, or the link was closed (this dlmd fenced, or the
	// link was replaced) or a newer stream carries it: the other side
	// redials and meets what is there now.
	return nil
}

// Dump returns the resources this node masters.
func (p *Peer) Dump(ctx context.Context, r *dlmpeerv1.DumpRequest) (*dlmpeerv1.DumpReply, error) {
	if err := checkPeer(ctx); err != nil {
		return nil, err
	}
	var out []*dlmv1.Resource
	if err := p.s.call(ctx, func() { out = p.s.dump(r.GetLockspace()) }); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &dlmpeerv1.DumpReply{Resources: out}, nil
}

// dump renders the master tables (of one lockspace, or all).
func (s *Server) dump(only string) []*dlmv1.Resource {
	var out []*dlmv1.Resource
	for _, name := range sortedKeys(s.tables) {
		if only != "" && name != only {
			continue
		}
		t := s.tables[name]
		for _, r := range t.Resources() {
			lvb, valid, _ := t.LVB(r)
			res := &dlmv1.Resource{Lockspace: name, Name: r, Master: s.self, LvbValid: valid, Lvb: lvb[:]}
			for _, li := range t.Dump(r) {
				res.Locks = append(res.Locks, &dlmv1.Lock{Node: uint32(li.Key.Owner.Node), Client: li.Key.Owner.Client,
					Pid: s.pids[li.Key.Owner], Id: uint64(li.Key.ID), State: plockState(li.State),
					Granted: pmode(li.Granted), Requested: pmode(li.Requested), Flags: uint32(li.Flags), Orphan: li.Orphan})
			}
			out = append(out, res)
		}
	}
	return out
}

// Edges returns the wait-for edges of this node's masters.
func (p *Peer) Edges(ctx context.Context, _ *dlmpeerv1.EdgesRequest) (*dlmpeerv1.EdgesReply, error) {
	if err := checkPeer(ctx); err != nil {
		return nil, err
	}
	var out []*dlmpeerv1.Edge
	if err := p.s.call(ctx, func() { out = p.s.edges() }); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &dlmpeerv1.EdgesReply{Edges: out}, nil
}

func (s *Server) edges() []*dlmpeerv1.Edge {
	if s.rec != nil {
		return nil
	}
	var out []*dlmpeerv1.Edge
	for _, name := range sortedKeys(s.tables) {
		for _, e := range s.tables[name].WaitEdges() {
			out = append(out, edgeToProto(name, e))
		}
	}
	return out
}

func edgeToProto(ls string, e lockspace.Edge) *dlmpeerv1.Edge {
	w := e.Waiter
	return &dlmpeerv1.Edge{Lockspace: ls, HolderNode: uint32(e.Holder.Node), HolderClient: e.Holder.Client,
		Waiter: &dlmpeerv1.Waiter{Resource: w.Resource, Node: uint32(w.Key.Owner.Node), Client: w.Key.Owner.Client,
			LockId: uint64(w.Key.ID), Seq: w.Seq, Mode: pmode(w.Mode)}}
}

func edgeFromProto(e *dlmpeerv1.Edge) (string, lockspace.Edge) {
	w := e.GetWaiter()
	return e.GetLockspace(), lockspace.Edge{
		Holder: lockspace.Owner{Node: lockspace.NodeID(e.GetHolderNode()), Client: e.GetHolderClient()},
		Waiter: lockspace.Waiter{Resource: w.GetResource(), Seq: w.GetSeq(), Mode: mode(w.GetMode()),
			Key: lockspace.Key{Owner: lockspace.Owner{Node: lockspace.NodeID(w.GetNode()), Client: w.GetClient()}, ID: lockspace.LockID(w.GetLockId())}},
	}
}

// Victims fails deadlock victims pending on this node's masters.
func (p *Peer) Victims(ctx context.Context, r *dlmpeerv1.VictimsRequest) (*dlmpeerv1.VictimsReply, error) {
	if err := checkPeer(ctx); err != nil {
		return nil, err
	}
	if err := p.s.call(ctx, func() { p.s.victims(r.GetVictims()) }); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &dlmpeerv1.VictimsReply{}, nil
}

func (s *Server) victims(vs []*dlmpeerv1.Edge) {
	if s.rec != nil {
		return
	}
	by := map[string][]lockspace.Waiter{}
	for _, v := range vs {
		ls, e := edgeFromProto(v)
		by[ls] = append(by[ls], e.Waiter)
	}
	for _, name := range sortedKeys(by) {
		if t := s.tables[name]; t != nil {
			s.route(name, t.ApplyVictims(by[name]))
		}
	}
}

// deadlockLoop runs on every node; the lowest member of the directory
// does the work: it merges every master's wait-for edges, finds the
// victims (the same on any node) and has their masters refuse them.
//
// The masters' edges are read one after the other, and an unlock and the
// owner's next request may reach different masters in either order: the
// merged graph can show a cycle that never existed (an owner seen holding
// what it has already released). Only the edges seen in two consecutive
// rounds count: the requests on them kept waiting for the same owners
// for a whole interval, as in a real deadlock.
func (s *Server) deadlockLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.DeadlockInterval)
	defer t.Stop()
	var prev map[lsEdge]bool
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

// lsEdge is a wait-for edge of a lockspace.
type lsEdge struct {
	ls string
	e  lockspace.Edge
}

// detectOnce runs a round of detection on the edges also seen in the
// round before (prev); it returns the edges it saw (nil when this node
// is not the coordinator or the round failed).
func (s *Server) detectOnce(ctx context.Context, prev map[lsEdge]bool) (map[lsEdge]bool, error) {
	var members []uint32
	var local []*dlmpeerv1.Edge
	if err := s.call(ctx, func() {
		if s.rec == nil && len(s.dir) > 0 && s.dir[0] == s.self {
			members = slices.Clone(s.dir)
			local = s.edges()
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
	seen := make(map[lsEdge]bool, len(all))
	by := map[string][]lockspace.Edge{}
	for _, e := range all {
		ls, le := edgeFromProto(e)
		seen[lsEdge{ls, le}] = true
		if prev[lsEdge{ls, le}] {
			by[ls] = append(by[ls], le)
		}
	}
	var victims []*dlmpeerv1.Edge
	for _, ls := range sortedKeys(by) {
		for _, w := range lockspace.FindVictims(by[ls]) {
			victims = append(victims, edgeToProto(ls, lockspace.Edge{Waiter: w}))
		}
	}
	if len(victims) == 0 {
		return seen, nil
	}
	s.log.WithField("victims", len(victims)).Info("deadlock: refusing the youngest request of each cycle")
	_ = s.call(ctx, func() { s.victims(victims) })
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
