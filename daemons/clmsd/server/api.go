package server

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/clmsd/membership"
	"github.com/openssi/openssi/internal/localapi"
	clmsv1 "github.com/openssi/openssi/proto/clms/v1"
)

// API is the local Membership service on /run/openssi/clmsd.sock, a thin
// adapter over Server. Reading the membership is open to every local user
// (as /proc is); leaving the cluster is root's.
//
// A member's name is the Consul node name holding its number's claim
// (clms/nodes/<n>, which only that node's token may write), not the name
// in the shared view that any node may write: the other daemons believe a
// peer's node number only from a certificate naming that node (dlmd asks
// Node for it), so the name must come from the record the number's holder
// alone controls. It is empty when no claim is known.
type API struct {
	clmsv1.UnimplementedMembershipServer
	s *Server
	// OnLeave is called after a successful Leave so the daemon can exit.
	OnLeave func()
}

// NewAPI returns the local API of s.
func NewAPI(s *Server, onLeave func()) *API { return &API{s: s, OnLeave: onLeave} }

// Register adds the service to a gRPC server.
func (a *API) Register(g *grpc.Server) { clmsv1.RegisterMembershipServer(g, a) }

// ThisNode returns this node.
func (a *API) ThisNode(ctx context.Context, _ *clmsv1.ThisNodeRequest) (*clmsv1.NodeReply, error) {
	return a.Node(ctx, &clmsv1.NodeRequest{Number: uint32(a.s.number)})
}

// Node returns node n.
func (a *API) Node(_ context.Context, r *clmsv1.NodeRequest) (*clmsv1.NodeReply, error) {
	v, _ := a.s.snapshotView()
	m, ok := v.Member(int(r.GetNumber()))
	if !ok {
		return nil, status.Errorf(codes.NotFound, "not in the membership at epoch %d", v.Epoch)
	}
	return &clmsv1.NodeReply{Node: a.s.toProto(m), Epoch: v.Epoch}, nil
}

// Nodes returns the whole view.
func (a *API) Nodes(context.Context, *clmsv1.NodesRequest) (*clmsv1.NodesReply, error) {
	v, _ := a.s.snapshotView()
	a.s.mu.Lock()
	quorum, lost := a.s.quorum, a.s.lostSince
	a.s.mu.Unlock()
	r := &clmsv1.NodesReply{
		Epoch:              v.Epoch,
		ThisNode:           uint32(a.s.number),
		Quorum:             quorum,
		SkewThresholdNanos: int64(a.s.cfg.SkewThreshold),
	}
	if !lost.IsZero() {
		r.QuorumLostSinceUnixNano = lost.UnixNano()
	}
	for _, m := range v.Members {
		r.Nodes = append(r.Nodes, a.s.toProto(m))
	}
	return r, nil
}

// Watch streams events after the asked epoch, in order, until the client
// goes away.
func (a *API) Watch(r *clmsv1.WatchRequest, stream grpc.ServerStreamingServer[clmsv1.Event]) error {
	last := r.GetFromEpoch()
	ctx := stream.Context()
	for {
		v, changed := a.s.snapshotView()
		events, err := membership.EventsAfter(v, last)
		if errors.Is(err, membership.ErrTrimmed) {
			return status.Error(codes.OutOfRange, strings.TrimPrefix(err.Error(), membership.ErrTrimmed.Error()+": ")+"; resynchronise from Nodes")
		}
		for _, e := range events {
			if err := stream.Send(a.s.eventToProto(e)); err != nil {
				return err
			}
			last = e.Epoch
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		case <-a.s.done:
			return status.Error(codes.Unavailable, "clmsd is stopping")
		}
	}
}

// Leave makes this node leave the cluster (root only).
func (a *API) Leave(ctx context.Context, _ *clmsv1.LeaveRequest) (*clmsv1.LeaveReply, error) {
	if err := localapi.RequireRoot(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	epoch, err := a.s.Leave(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if a.OnLeave != nil {
		a.OnLeave()
	}
	return &clmsv1.LeaveReply{Epoch: epoch}, nil
}

func (s *Server) toProto(m membership.Member) *clmsv1.Node {
	n := s.memberToProto(m)
	s.mu.Lock()
	sk, ok := s.skew.Get(m.Number)
	s.mu.Unlock()
	if m.Number == s.number {
		sk, ok = membership.Skew{}, true
	}
	if ok && m.State == membership.Up {
		n.SkewKnown = true
		n.SkewNanos = int64(sk.Offset)
		n.SkewRttNanos = int64(sk.Delay)
		n.SkewWarning = sk.Warn
	}
	return n
}

var stateToProto = map[membership.State]clmsv1.NodeState{
	membership.Up:      clmsv1.NodeState_NODE_STATE_UP,
	membership.Down:    clmsv1.NodeState_NODE_STATE_DOWN,
	membership.Leaving: clmsv1.NodeState_NODE_STATE_LEAVING,
}

var eventTypeToProto = map[membership.EventType]clmsv1.EventType{
	membership.NodeUp:    clmsv1.EventType_EVENT_TYPE_NODEUP,
	membership.NodeDown:  clmsv1.EventType_EVENT_TYPE_NODEDOWN,
	membership.NodeLeave: clmsv1.EventType_EVENT_TYPE_NODELEAVE,
}

// memberToProto renders a member with the name of its claim's holder
// (see API).
func (s *Server) memberToProto(m membership.Member) *clmsv1.Node {
	return &clmsv1.Node{
		Number:        uint32(m.Number),
		Name:          s.claimName(m.Number),
		Address:       m.Address,
		State:         stateToProto[m.State],
		SinceUnixNano: m.Since.UnixNano(),
	}
}

func (s *Server) eventToProto(e membership.Event) *clmsv1.Event {
	return &clmsv1.Event{
		Epoch:        e.Epoch,
		Type:         eventTypeToProto[e.Type],
		Node:         s.memberToProto(e.Member),
		TimeUnixNano: e.Time.UnixNano(),
	}
}
