package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/initfailover/election"
	"github.com/openssi/openssi/daemons/initfailover/initfailoverspec"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
	initfailoverv1 "github.com/openssi/openssi/proto/initfailover/v1"
	initfailoverpeerv1 "github.com/openssi/openssi/proto/initfailoverpeer/v1"
)

// API is the local API on initfailover's socket.
type API struct {
	initfailoverv1.UnimplementedInitfailoverServer
	s *Server
}

// NewAPI returns the local API of s.
func NewAPI(s *Server) *API { return &API{s: s} }

// Register adds the service to a gRPC server.
func (a *API) Register(g *grpc.Server) { initfailoverv1.RegisterInitfailoverServer(g, a) }

// Init says which node is init and this node's state.
func (a *API) Init(ctx context.Context, _ *initfailoverv1.InitRequest) (*initfailoverv1.InitReply, error) {
	r := &initfailoverv1.InitReply{ThisNode: a.s.cfg.Node, State: "no systemd: never init"}
	if el := a.s.cfg.Elector; el != nil {
		st, since, _ := el.Status()
		r.State = st.String()
		if !since.IsZero() {
			r.SinceUnixNanos = since.UnixNano()
		}
	}
	n, err := a.s.InitNode(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "initfailover: which node is init: %v", err)
	}
	r.InitNode = n
	return r, nil
}

// Move hands the init role to another node (root only), from wherever
// it is now.
func (a *API) Move(ctx context.Context, req *initfailoverv1.MoveRequest) (*initfailoverv1.MoveReply, error) {
	uid, err := callerUID(ctx)
	if err != nil {
		return nil, err
	}
	if uid != 0 {
		return nil, status.Errorf(codes.PermissionDenied, "initfailover: ssi init move: only root may move the init role (uid %d)", uid)
	}
	if !a.s.isUp(req.GetNode()) {
		return nil, status.Errorf(codes.FailedPrecondition, "initfailover: node %d is not UP", req.GetNode())
	}
	from, err := a.s.initNode(ctx, true)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "initfailover: which node is init: %v", err)
	}
	if from != 0 && from != req.GetNode() {
		if err := a.s.canTake(ctx, req.GetNode()); err != nil {
			return nil, err
		}
	}
	switch {
	case from == 0:
		return nil, status.Error(codes.FailedPrecondition, "initfailover: no node is init now (is initfailover running on the UP nodes?)")
	case from == a.s.cfg.Node && a.s.cfg.Elector != nil:
		if err := moveError(a.s.cfg.Elector.Move(ctx, req.GetNode())); err != nil {
			return nil, err
		}
		return &initfailoverv1.MoveReply{From: from}, nil
	}
	p, err := a.s.peer(ctx, from)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "initfailover: node %d's initfailover: %v", from, err)
	}
	if _, err := p.Move(ctx, &initfailoverpeerv1.PeerMove{Origin: a.s.cfg.Node, CallerUid: uid, Node: req.GetNode()}); err != nil {
		return nil, err
	}
	return &initfailoverv1.MoveReply{From: from}, nil
}

// canTake checks that node n's initfailover can take the init role now:
// it answers, takes part in the election, and is queued for the lock
// (waiting). Else the hand-over would pass it by and another node would
// take the role.
func (s *Server) canTake(ctx context.Context, n uint32) error {
	st := s.electionState()
	if n != s.cfg.Node {
		p, err := s.peer(ctx, n)
		var r *initfailoverpeerv1.PeerStateReply
		if err == nil {
			r, err = p.State(ctx, &initfailoverpeerv1.PeerState{Origin: s.cfg.Node})
		}
		if err != nil {
			return status.Errorf(codes.FailedPrecondition, "initfailover: node %d cannot take the init role: its initfailover does not answer (%s)", n, status.Convert(err).Message())
		}
		st = r
	}
	switch {
	case !st.GetElecting():
		return status.Errorf(codes.FailedPrecondition, "initfailover: node %d cannot take the init role: systemd is not its init", n)
	case st.GetState() != election.Waiting.String():
		return status.Errorf(codes.FailedPrecondition, "initfailover: node %d cannot take the init role now: its initfailover is %s, not waiting for it", n, st.GetState())
	}
	return nil
}

// electionState is this node's place in the election.
func (s *Server) electionState() *initfailoverpeerv1.PeerStateReply {
	el := s.cfg.Elector
	if el == nil {
		return &initfailoverpeerv1.PeerStateReply{}
	}
	st, _, _ := el.Status()
	return &initfailoverpeerv1.PeerStateReply{Electing: true, State: st.String()}
}

// Service acts on a unit of the nodes asked, one line per node, in node
// order; a node that is not UP or does not answer gets a line saying so.
func (a *API) Service(ctx context.Context, req *initfailoverv1.ServiceRequest) (*initfailoverv1.ServiceReply, error) {
	uid, err := callerUID(ctx)
	if err != nil {
		return nil, err
	}
	if err := mayAct(req.GetAction(), uid); err != nil {
		return nil, err
	}
	ask := unitAsk{action: req.GetAction(), unit: req.GetUnit(), check: req.GetCheck(), force: req.GetForce(), timeout: time.Duration(req.GetTimeoutNanos())}
	if err := ask.valid(); err != nil {
		return nil, err
	}
	nodes, err := serviceNodes(req.GetNodes())
	if err != nil {
		return nil, err
	}
	switch {
	case req.GetAll():
		nodes = a.s.upNodes()
	case len(nodes) == 0:
		nodes = []uint32{a.s.cfg.Node}
	}
	if ask.action == initfailoverv1.Action_ACTION_ISOLATE && !ask.check && len(nodes) != 1 {
		// Isolating nodes at once could take a majority out together:
		// ssi isolate moves them one at a time.
		return nil, status.Error(codes.InvalidArgument, "initfailover: isolate acts on one node at a time (ssi isolate orders them)")
	}
	lines := make([]*initfailoverv1.UnitLine, len(nodes))
	var wg sync.WaitGroup
	slots := make(chan struct{}, serviceFanout)
	for i, n := range nodes {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			lines[i] = a.s.unitOn(ctx, n, uid, ask)
		}()
	}
	wg.Wait()
	return &initfailoverv1.ServiceReply{Lines: lines}, nil
}

// serviceFanout bounds the nodes one Service call acts on at once.
const serviceFanout = 16

// serviceNodes checks the nodes a Service call names: node numbers
// 1..cpid.MaxNode, at most that many; it returns them sorted, each once.
func serviceNodes(asked []uint32) ([]uint32, error) {
	if len(asked) > cpid.MaxNode {
		return nil, status.Errorf(codes.InvalidArgument, "initfailover: ssi service: %d nodes named: at most %d", len(asked), cpid.MaxNode)
	}
	for _, n := range asked {
		if n < 1 || n > cpid.MaxNode {
			return nil, status.Errorf(codes.InvalidArgument, "initfailover: ssi service: %d is not a node number (1..%d)", n, cpid.MaxNode)
		}
	}
	nodes := slices.Clone(asked)
	slices.Sort(nodes)
	return slices.Compact(nodes), nil
}

// unitOn carries out an action on node n: here, or through its
// initfailover.
func (s *Server) unitOn(ctx context.Context, n, uid uint32, ask unitAsk) *initfailoverv1.UnitLine {
	if n == s.cfg.Node {
		return s.unit(ctx, ask)
	}
	if !s.isUp(n) {
		return &initfailoverv1.UnitLine{Node: n, Error: fmt.Sprintf("node %d is not UP", n)}
	}
	p, err := s.peer(ctx, n)
	if err == nil {
		var line *initfailoverv1.UnitLine
		line, err = p.Unit(ctx, &initfailoverpeerv1.PeerUnit{Origin: s.cfg.Node, CallerUid: uid, Action: ask.action, Unit: ask.unit, Check: ask.check, Force: ask.force,
			TimeoutNanos: int64(ask.timeout)})
		if err == nil {
			line.Node = n
			return line
		}
		err = fmt.Errorf("%s", status.Convert(err).Message())
	}
	return &initfailoverv1.UnitLine{Node: n, Error: fmt.Sprintf("node %d's initfailover: %v", n, err)}
}

// Peer is initfailover's service to the initfailover of the other nodes.
type Peer struct {
	initfailoverpeerv1.UnimplementedInitfailoverPeerServer
	s *Server
}

// NewPeer returns the peer service of s.
func NewPeer(s *Server) *Peer { return &Peer{s: s} }

// Register adds the service to a gRPC server.
func (p *Peer) Register(g *grpc.Server) { initfailoverpeerv1.RegisterInitfailoverPeerServer(g, p) }

// Move hands this node's init role over, for a root caller of the origin.
func (p *Peer) Move(ctx context.Context, req *initfailoverpeerv1.PeerMove) (*initfailoverv1.MoveReply, error) {
	if err := p.s.peers.RequireNode(ctx, req.GetOrigin()); err != nil {
		return nil, err
	}
	if req.GetCallerUid() != 0 {
		return nil, status.Errorf(codes.PermissionDenied, "initfailover: ssi init move: only root may move the init role (uid %d on node %d)", req.GetCallerUid(), req.GetOrigin())
	}
	if p.s.cfg.Elector == nil {
		return nil, status.Error(codes.FailedPrecondition, "initfailover: no election on this node")
	}
	if err := moveError(p.s.cfg.Elector.Move(ctx, req.GetNode())); err != nil {
		return nil, err
	}
	return &initfailoverv1.MoveReply{From: p.s.cfg.Node}, nil
}

// State says this node's place in the election to the origin's
// initfailover.
func (p *Peer) State(ctx context.Context, req *initfailoverpeerv1.PeerState) (*initfailoverpeerv1.PeerStateReply, error) {
	if err := p.s.peers.RequireNode(ctx, req.GetOrigin()); err != nil {
		return nil, err
	}
	return p.s.electionState(), nil
}

// Unit carries out an action on a unit of this node for a caller of the
// origin: status for anyone, changes for root.
func (p *Peer) Unit(ctx context.Context, req *initfailoverpeerv1.PeerUnit) (*initfailoverv1.UnitLine, error) {
	if err := p.s.peers.RequireNode(ctx, req.GetOrigin()); err != nil {
		return nil, err
	}
	if err := mayAct(req.GetAction(), req.GetCallerUid()); err != nil {
		return nil, err
	}
	ask := unitAsk{action: req.GetAction(), unit: req.GetUnit(), check: req.GetCheck(), force: req.GetForce(), timeout: time.Duration(req.GetTimeoutNanos())}
	if err := ask.valid(); err != nil {
		return nil, err
	}
	return p.s.unit(ctx, ask), nil
}

// unitAsk is one action on a unit of a node.
type unitAsk struct {
	action initfailoverv1.Action
	unit   string
	// check: only check that the action could be done; force: isolate
	// a target that does not keep the node in the cluster.
	check, force bool
	// timeout bounds an isolate job in place of the server's Timeout
	// (0: that).
	timeout time.Duration
}

// valid checks the unit's name (a target for isolate).
func (a unitAsk) valid() error {
	check := initfailoverspec.CheckUnit
	if a.action == initfailoverv1.Action_ACTION_ISOLATE {
		check = initfailoverspec.CheckIsolateTarget
	}
	if err := check(a.unit); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if a.timeout < 0 || a.timeout > initfailoverspec.MaxIsolateTimeout {
		return status.Errorf(codes.InvalidArgument, "initfailover: timeout %s: want at most %s", a.timeout, initfailoverspec.MaxIsolateTimeout)
	}
	return nil
}
