package server

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/vprocd/access"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/migrate"
	"github.com/openssi/openssi/internal/localapi"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// This file hands a moved program's stdio over. The exec stream of the
// node it left ends with Moved once the old copy's output is drained;
// the origin's relay (forward) then opens an Attach stream to the node
// it moved to, which serves the copy as run does a program it started:
// so the caller reads one stream, the old copy's output before the new
// one's, and its inputs go to the new copy from then on.

// attach serves, for its origin, the copy of a program that moved here.
func (s *Server) attach(ctx context.Context, stream vprocpeerv1.VprocPeer_ExecServer, a *vprocpeerv1.Attach) error {
	if err := s.peers.RequireNode(ctx, a.GetOrigin()); err != nil {
		return err
	}
	x, err := checkCPID(a.GetCpid())
	if err != nil {
		return err
	}
	id, err := moveIDOf(a.GetMove())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	c, err := s.awaitCopy(ctx, id)
	if err != nil {
		return err
	}
	if c.cpid != x || c.org.node != a.Origin {
		// Not the origin's: leave it for its own (put it back).
		s.mig.mu.Lock()
		c.taken = false
		s.mig.copies[id] = c
		s.mig.mu.Unlock()
		return status.Errorf(codes.PermissionDenied, "vproc: move %s is not of process %s of node %d", id, x, a.Origin)
	}
	defer c.done()
	out := &sender{send: stream.Send}
	log := s.log.WithField("cpid", x).WithField("uid", c.prog.Uid)
	rec, _ := s.migrating(x)
	mig := &migProg{link: c.link, prog: c.prog, p: c.p}
	if rec != nil {
		mig = rec.mig
	}
	f := &fate{s: s, cpid: x, origin: c.org, p: c.p}
	if err := out.Send(&vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Started{Started: &vprocv1.Started{Cpid: int64(x), Node: s.cfg.Node, Pid: int32(c.p.Pid)}}}); err != nil {
		f.lost(false)
		c.p.Wait()
		c.p.CloseOutput()
		c.link.close()
		s.ended(x)
		return err
	}
	log.Debug("the origin attached to a moved program")
	return s.serve(ctx, peerInputs{stream}, out, c.p, f, mig, log)
}

// awaitCopy takes the copy of move id once it is resumed (the origin may
// hear the source's Moved before this node hears the commit).
func (s *Server) awaitCopy(ctx context.Context, id migrate.ID) (*copyHere, error) {
	t := time.NewTimer(attachWait)
	defer t.Stop()
	for {
		s.mig.mu.Lock()
		c := s.mig.copies[id]
		s.mig.mu.Unlock()
		if c != nil {
			select {
			case <-c.ready:
				if c := s.takeCopy(id); c != nil {
					return c, nil
				}
				return nil, status.Errorf(codes.NotFound, "vproc: move %s: its program is gone", id)
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-t.C:
				return nil, status.Errorf(codes.NotFound, "vproc: move %s did not commit here", id)
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			return nil, status.Errorf(codes.NotFound, "vproc: no program of move %s here", id)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// followWait bounds the wait of a migratable exec whose program's node
// went DOWN (or whose link to it broke) for a move of the program away
// from it to be decided here.
const followWait = 3 * time.Second

// movedAway waits, when the node `from` of program x went DOWN, for this
// node, the arbiter of x's moves (its origin), to commit a move of x away
// from it, and returns that move as a Moved whose old copy's share of
// stdin is not known (-1); nil when there is none. A move still being
// decided is waited for up to the confirmation's timeout.
func (s *Server) movedAway(ctx context.Context, x int64, from uint32) *vprocv1.Moved {
	c, err := checkCPID(x)
	if err != nil || c.Node() != s.cfg.Node {
		return nil
	}
	begin := time.Now()
	for {
		deciding := false
		s.mig.mu.Lock()
		for _, st := range s.mig.node.Moves() {
			if st.Role != "arbiter" || st.Move.CPID != uint64(c) || st.Move.Source != from {
				continue
			}
			switch st.State {
			case migrate.Commit.String():
				s.mig.mu.Unlock()
				return &vprocv1.Moved{Node: st.Move.Target, Move: moveName(st.Move.ID), StdinTaken: -1}
			case "querying":
				deciding = true
			}
		}
		s.mig.mu.Unlock()
		wait := followWait
		if deciding {
			wait = migrate.DefaultConfirmTimeout
		}
		if time.Since(begin) > wait {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// callerOf is the caller of the local socket.
func callerOf(ctx context.Context) (localapi.Cred, error) {
	c, ok := localapi.CallerFrom(ctx)
	if !ok {
		return localapi.Cred{}, status.Error(codes.Unauthenticated, "vproc: the caller's credentials are unknown")
	}
	return c, nil
}

// accessMigrate is access.Migrate as a status.
func accessMigrate(caller, owner uint32, x cpid.CPID) error {
	if err := access.Migrate(caller, owner, x); err != nil {
		return status.Error(codes.PermissionDenied, "vproc: "+err.Error())
	}
	return nil
}
