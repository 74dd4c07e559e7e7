package server

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/migrate"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// This file converts the move protocol's messages (package migrate) to
// and from their peer form. moveOf is a decoder of a peer's input: it
// refuses what the core could not have sent (fuzzed in movewire_test.go).

// maxReason bounds a message's reason.
const maxReason = 1024

func moveProto(m migrate.Move) *vprocpeerv1.Move {
	return &vprocpeerv1.Move{Id: &vprocpeerv1.MoveID{Source: m.ID.Source, Inc: m.ID.Inc, N: m.ID.N}, Cpid: int64(m.CPID),
		Origin: m.Origin, Source: m.Source, Target: m.Target, Mech: uint32(m.Mech)}
}

func messageProto(m migrate.Message) *vprocpeerv1.MoveMessage {
	return &vprocpeerv1.MoveMessage{Kind: uint32(m.Kind), From: m.From, To: m.To, Move: moveProto(m.Move), Outcome: uint32(m.Outcome),
		Ballot: &vprocpeerv1.Ballot{Epoch: m.Ballot.Epoch, Node: m.Ballot.Node}, Confirmed: m.Confirmed, Active: m.Active, Lost: m.Lost,
		Prior: &vprocpeerv1.Ballot{Epoch: m.Prior.Epoch, Node: m.Prior.Node}, Want: uint32(m.Want), Reason: m.Reason}
}

// moveOf is the move of a peer's message: its nodes within clmsd's
// numbers, its cpid a cluster pid of its origin, its mechanism known.
func moveOf(p *vprocpeerv1.Move) (migrate.Move, error) {
	if p == nil || p.Id == nil {
		return migrate.Move{}, fmt.Errorf("vproc: a move message without its move")
	}
	m := migrate.Move{ID: migrate.ID{Source: p.Id.Source, Inc: p.Id.Inc, N: p.Id.N}, Origin: p.Origin, Source: p.Source,
		Target: p.Target, Mech: migrate.Mechanism(p.Mech)}
	for _, n := range []uint32{m.Origin, m.Source, m.Target, m.ID.Source} {
		if n == 0 || n > cpid.MaxNode {
			return migrate.Move{}, fmt.Errorf("vproc: a move naming node %d", n)
		}
	}
	x, err := checkCPID(p.Cpid)
	if err != nil {
		return migrate.Move{}, err
	}
	if x.Node() != m.Origin {
		return migrate.Move{}, fmt.Errorf("vproc: a move of cpid %s with origin %d", x, m.Origin)
	}
	m.CPID = uint64(x)
	if m.Mech != migrate.CRIU && m.Mech != migrate.Cooperative {
		return migrate.Move{}, fmt.Errorf("vproc: a move by mechanism %d", p.Mech)
	}
	return m, nil
}

// messageOf is a peer's message; From is left to the caller, which sets
// it from the sender's certificate.
func messageOf(p *vprocpeerv1.MoveMessage) (migrate.Message, error) {
	if p == nil {
		return migrate.Message{}, fmt.Errorf("vproc: an empty move message")
	}
	mv, err := moveOf(p.Move)
	if err != nil {
		return migrate.Message{}, err
	}
	if p.Kind < uint32(migrate.MsgImage) || p.Kind > uint32(migrate.MsgAborted) {
		return migrate.Message{}, fmt.Errorf("vproc: a move message of kind %d", p.Kind)
	}
	if p.Outcome > uint32(migrate.Abort) || p.Want > uint32(migrate.Abort) {
		return migrate.Message{}, fmt.Errorf("vproc: a move message with outcome %d, want %d", p.Outcome, p.Want)
	}
	if len(p.Reason) > maxReason {
		return migrate.Message{}, fmt.Errorf("vproc: a move message with a reason of %d bytes", len(p.Reason))
	}
	return migrate.Message{Kind: migrate.Kind(p.Kind), From: p.From, To: p.To, Move: mv, Outcome: migrate.Outcome(p.Outcome),
		Ballot: migrate.Ballot{Epoch: p.GetBallot().GetEpoch(), Node: p.GetBallot().GetNode()}, Confirmed: p.Confirmed, Active: p.Active,
		Lost: p.Lost, Prior: migrate.Ballot{Epoch: p.GetPrior().GetEpoch(), Node: p.GetPrior().GetNode()}, Want: migrate.Outcome(p.Want),
		Reason: p.Reason}, nil
}

// moveName is a move's ID as Moved and Attach carry it.
func moveName(id migrate.ID) string { return id.String() }

// moveIDOf parses moveName.
func moveIDOf(s string) (migrate.ID, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return migrate.ID{}, fmt.Errorf("vproc: %.40q is not a move", s)
	}
	var v [3]uint64
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return migrate.ID{}, fmt.Errorf("vproc: %.40q is not a move", s)
		}
		v[i] = n
	}
	if v[0] == 0 || v[0] > cpid.MaxNode {
		return migrate.ID{}, fmt.Errorf("vproc: %.40q is not a move", s)
	}
	return migrate.ID{Source: uint32(v[0]), Inc: v[1], N: v[2]}, nil
}
