package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/vprocd/runner"
	"github.com/openssi/openssi/internal/rpc"
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
	start := first.GetStart()
	if err := CheckStart(start, p.s.cfg.Node); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if err := p.s.requireNode(ctx, start.Origin); err != nil {
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

// requireNode checks that the caller of ctx is the vprocd of the node
// holding number claimed: a mismatch is refused with PermissionDenied
// (logged once per kind), a number whose holder is not known now with
// Unavailable.
func (s *Server) requireNode(ctx context.Context, claimed uint32) error {
	id, ok := rpc.PeerIdentity(ctx)
	if !ok || id.Service != ServiceName {
		return status.Errorf(codes.PermissionDenied, "vproc: only %s may call this (caller %q)", ServiceName, id)
	}
	name, err := s.holder(ctx, claimed)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	if !id.OnNode(name) {
		msg := fmt.Sprintf("vproc: refused a peer vprocd: it claims to be node %d (held by %q) but its certificate names node %q", claimed, name, id.Node)
		s.refusals.Log(s.log, fmt.Sprintf("%d|%s|%s", claimed, strings.ToLower(id.Node), strings.ToLower(name)),
			logrus.Fields{"claimed_node": claimed, "holder": name, "certificate_node": id.Node}, msg)
		return status.Error(codes.PermissionDenied, msg)
	}
	return nil
}
