package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/dlmd/node"
	"github.com/openssi/openssi/internal/rpc"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// A peer dlmd is believed to be node n only when its certificate names
// the Consul node that holds n's claim (clms/nodes/<n>; only that node's
// Consul token may write it, and only that node's token may obtain the
// certificate of identity "openssi-dlmd.<its name>"). The shell learns
// the holder from Config.NodeName (main asks the local clmsd, whose API
// reports each member under its claim's holder) at every hello and every
// dial; it keeps no copy, so a number taken over by another node is
// believed of the new holder at once.

// ErrNoHolder is returned by the name lookup when node number n has no
// known holder: a peer claiming n is not believed.
var ErrNoHolder = errors.New("dlm: no known holder of the node number")

// holderTimeout bounds one lookup of a number's holder (a local call to
// clmsd), under the peer's wait for our hello (handshakeTimeout).
const holderTimeout = 2 * time.Second

// holder returns the Consul node name holding node number n.
func (s *Server) holder(ctx context.Context, n uint32) (string, error) {
	if s.cfg.NodeName == nil {
		return "", fmt.Errorf("%w %d (no membership to ask)", ErrNoHolder, n)
	}
	ctx, cancel := context.WithTimeout(ctx, holderTimeout)
	defer cancel()
	name, err := s.cfg.NodeName(ctx, n)
	if err != nil {
		return "", fmt.Errorf("dlm: who holds node %d: %w", n, err)
	}
	if name == "" {
		return "", fmt.Errorf("%w %d", ErrNoHolder, n)
	}
	return name, nil
}

// peerWant returns the identity the dlmd of node n must hold, for
// dialling it.
func (s *Server) peerWant(ctx context.Context, n uint32) (string, error) {
	name, err := s.holder(ctx, n)
	if err != nil {
		return "", err
	}
	return rpc.NodeIdentity(ServiceName, name), nil
}

// authenticate checks that the caller of ctx, which claims to be node
// claimed's dlmd, holds the certificate of the node holding claimed. A
// mismatch is logged once per claimed number, certificate node and holder
// (see refusals) and refused with PermissionDenied; a number whose holder
// cannot be learnt now is refused with Unavailable (the peer redials).
func (s *Server) authenticate(ctx context.Context, claimed uint32) error {
	return s.requireNode(ctx, claimed, fmt.Sprintf("it claims to be node %d", claimed))
}

// requireNode is authenticate for a caller that must be node n's dlmd
// for the reason role says ("it claims to be node 2").
func (s *Server) requireNode(ctx context.Context, claimed uint32, role string) error {
	id, ok := rpc.PeerIdentity(ctx)
	if !ok || id.Service != ServiceName {
		return status.Errorf(codes.PermissionDenied, "dlm: only %s may call this (caller %q)", ServiceName, id)
	}
	name, err := s.holder(ctx, claimed)
	if err != nil {
		s.log.WithError(err).WithFields(logrus.Fields{"claimed_node": claimed, "certificate_node": id.Node}).
			Debug("refused a peer dlmd: the holder of the node number it claims is not known here (yet)")
		return status.Error(codes.Unavailable, err.Error())
	}
	if !id.OnNode(name) {
		msg := fmt.Sprintf("dlm: refused a peer dlmd: %s (held by %q) but its certificate names node %q", role, name, id.Node)
		s.refusals.Log(s.log, fmt.Sprintf("%s|%d|%s|%s", role, claimed, strings.ToLower(id.Node), strings.ToLower(name)),
			logrus.Fields{"claimed_node": claimed, "holder": name, "certificate_node": id.Node}, msg)
		return status.Error(codes.PermissionDenied, msg)
	}
	return nil
}

// checkSender is the Check of a link with node n: it refuses a message
// naming another node as its sender (see node.CheckSender), logging it
// once per link node, message kind and named node.
func (s *Server) checkSender(n uint32) func(m *dlmpeerv1.PeerMessage) error {
	return func(m *dlmpeerv1.PeerMessage) error {
		err := node.CheckSender(n, m)
		if err == nil {
			return nil
		}
		claimed, _ := node.ClaimedSender(m)
		s.refusals.Log(s.log, fmt.Sprintf("sender|%d|%d", n, claimed),
			logrus.Fields{"link_node": n, "claimed_node": claimed}, "dlm: refused a peer message, closing its stream: "+err.Error())
		return status.Error(codes.PermissionDenied, err.Error())
	}
}
