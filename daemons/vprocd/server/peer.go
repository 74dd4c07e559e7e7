package server

import (
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/vprocd/runner"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// Peer is vprocd's service to the vprocd of the other nodes.
type Peer struct {
	vprocpeerv1.UnimplementedVprocPeerServer
	s *Server
}

// NewPeer returns the peer service of s.
func NewPeer(s *Server) *Peer { return &Peer{s: s} }

// Register adds the service to a gRPC server.
func (p *Peer) Register(g *grpc.Server) {
	vprocpeerv1.RegisterVprocPeerServer(g, p)
	registerLoadPeer(g, p.s)
	registerPsPeer(g, p.s)
	vprocpeerv1.RegisterVprocSignalPeerServer(g, signalPeer{s: p.s})
	vprocpeerv1.RegisterVprocMigratePeerServer(g, migratePeer{s: p.s})
}

// Exec runs a program for a caller of the origin node. The origin is
// believed only from the certificate of the vprocd of the node holding
// its number, and with it the caller's uid, gid and groups, which that
// vprocd read from its socket.
func (p *Peer) Exec(stream vprocpeerv1.VprocPeer_ExecServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if a := first.GetAttach(); a != nil {
		return p.s.attach(ctx, stream, a)
	}
	start := first.GetStart()
	if err := CheckStart(start, p.s.cfg.Node); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if err := p.s.peers.RequireNode(ctx, start.Origin); err != nil {
		return err
	}
	c := start.Caller
	cred := runner.Cred{UID: c.Uid, GID: c.Gid, Groups: c.Groups}
	return p.s.run(ctx, peerInputs{stream}, stream.Send, cred, start.Request, startOrigin(start))
}

// errCallerGone: the origin says the caller went away.
var errCallerGone = errors.New("vproc: the caller is gone")

// peerInputs reads the caller's inputs off a peer stream.
type peerInputs struct {
	s vprocpeerv1.VprocPeer_ExecServer
}

func (in peerInputs) Recv() (*vprocv1.ExecInput, error) {
	for {
		m, err := in.s.Recv()
		if err != nil {
			return nil, err
		}
		if i := m.GetInput(); i != nil {
			return i, nil
		}
		if m.GetCallerGone() {
			return nil, errCallerGone
		}
		// A second start: dropped, as CheckInput drops one.
	}
}
