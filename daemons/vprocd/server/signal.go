package server

import (
	"context"
	"errors"
	"math"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/vprocd/access"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/internal/localapi"
	"github.com/openssi/openssi/internal/rpc"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// maxSignal is the largest signal number (SIGRTMAX on Linux).
const maxSignal = 64

// signalAPI is the local API of `ssi kill` and `ssi renice`.
type signalAPI struct {
	vprocv1.UnimplementedVprocSignalServer
	s *Server
}

// signalPeer is its side between vprocd daemons.
type signalPeer struct {
	vprocpeerv1.UnimplementedVprocSignalPeerServer
	s *Server
}

// checkKill validates a kill request: its target and signal.
func checkKill(req *vprocv1.KillRequest) (cpid.Target, syscall.Signal, error) {
	if req == nil {
		return cpid.Target{}, 0, status.Error(codes.InvalidArgument, "vproc: empty kill request")
	}
	c, err := checkCPID(req.Cpid)
	if err != nil {
		return cpid.Target{}, 0, err
	}
	if req.Signal < 0 || req.Signal > maxSignal {
		return cpid.Target{}, 0, status.Errorf(codes.InvalidArgument, "vproc: signal %d is out of range 0..%d", req.Signal, maxSignal)
	}
	return cpid.Target{ID: c, Group: req.Group}, syscall.Signal(req.Signal), nil
}

func checkCPID(v int64) (cpid.CPID, error) {
	if v <= 0 || v > math.MaxInt32 || !cpid.CPID(v).Valid() {
		return 0, status.Errorf(codes.InvalidArgument, "vproc: %d is not a cluster pid (node<<%d|pid)", v, cpid.PIDBits)
	}
	return cpid.CPID(v), nil
}

// Kill signals a process or a cluster process group for the caller of
// the socket, whose uid comes from the kernel.
func (a signalAPI) Kill(ctx context.Context, req *vprocv1.KillRequest) (*vprocv1.KillReply, error) {
	caller, ok := localapi.CallerFrom(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "vproc: the caller's credentials are unknown")
	}
	t, sig, err := checkKill(req)
	if err != nil {
		return nil, err
	}
	if t.Group {
		return a.s.killGroup(ctx, caller.UID, t.ID, sig, req)
	}
	return a.s.kill(ctx, caller.UID, t.ID, sig, req, false)
}

// kill signals the process x for uid caller where it runs.
func (s *Server) kill(ctx context.Context, caller uint32, x cpid.CPID, sig syscall.Signal, req *vprocv1.KillRequest, fromPeer bool) (*vprocv1.KillReply, error) {
	return onProcess(ctx, s, x, fromPeer,
		func(pid int32) (*vprocv1.KillReply, error) { return s.killHere(caller, x, pid, sig) },
		func(cl vprocpeerv1.VprocSignalPeerClient, here bool) (*vprocv1.KillReply, error) {
			return cl.Kill(ctx, &vprocpeerv1.PeerKill{Origin: s.cfg.Node, CallerUid: caller, Request: req, Here: here})
		})
}

// Renice sets the nice value of a process for the caller of the socket.
func (a signalAPI) Renice(ctx context.Context, req *vprocv1.ReniceRequest) (*vprocv1.ReniceReply, error) {
	caller, ok := localapi.CallerFrom(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "vproc: the caller's credentials are unknown")
	}
	if req == nil {
		return nil, status.Error(codes.InvalidArgument, "vproc: empty renice request")
	}
	c, err := checkCPID(req.Cpid)
	if err != nil {
		return nil, err
	}
	return a.s.renice(ctx, caller.UID, c, req, false)
}

func (s *Server) renice(ctx context.Context, caller uint32, x cpid.CPID, req *vprocv1.ReniceRequest, fromPeer bool) (*vprocv1.ReniceReply, error) {
	return onProcess(ctx, s, x, fromPeer,
		func(pid int32) (*vprocv1.ReniceReply, error) { return s.reniceHere(caller, x, pid, int(req.Nice)) },
		func(cl vprocpeerv1.VprocSignalPeerClient, here bool) (*vprocv1.ReniceReply, error) {
			return cl.Renice(ctx, &vprocpeerv1.PeerRenice{Origin: s.cfg.Node, CallerUid: caller, Request: req, Here: here})
		})
}

// onProcess finds where process x runs, through the node that answers
// for its cpid (its origin, or a DOWN origin's surrogate: package
// pgroup), and acts on it: here with its pid, else through the vprocd of
// the node it runs on (here set) or of the node that answers for it. A
// request from a peer is not sent on to a third node to answer.
func onProcess[R any](ctx context.Context, s *Server, x cpid.CPID, fromPeer bool,
	local func(pid int32) (R, error), remote func(cl vprocpeerv1.VprocSignalPeerClient, here bool) (R, error)) (R, error) {
	var zero R
	a, err := s.pgLookup(ctx, x)
	if err != nil {
		return zero, err
	}
	switch {
	case a.Err != nil:
		return zero, errAnswer(a.Err)
	case a.Redirect != 0 && fromPeer:
		return zero, status.Errorf(codes.FailedPrecondition, "vproc: node %d does not answer for cpid %s (node %d does)", s.cfg.Node, x, a.Redirect)
	case a.Redirect != 0:
		cl, err := s.signalPeer(ctx, a.Redirect, x)
		if err != nil {
			return zero, err
		}
		return remote(cl, false)
	case a.Found && a.Proc.Node != s.cfg.Node:
		cl, err := s.signalPeer(ctx, a.Proc.Node, x)
		if err != nil {
			return zero, err
		}
		return remote(cl, true)
	case a.Found:
		if pid, ok := s.record(x); ok {
			// Its pid here as this node started it (a process that
			// moved here may be in the table before its pid is).
			return local(pid)
		}
		return local(a.Proc.PID)
	}
	return local(x.PID())
}

// Kill signals, for a caller of the origin, a process this node answers
// for or runs (here), or the members of a group that run here.
func (p signalPeer) Kill(ctx context.Context, req *vprocpeerv1.PeerKill) (*vprocv1.KillReply, error) {
	if err := p.s.peers.RequireNode(ctx, req.GetOrigin()); err != nil {
		return nil, err
	}
	t, sig, err := checkKill(req.Request)
	if err != nil {
		return nil, err
	}
	switch {
	case req.Exec && (t.Group || !req.Here):
		return nil, status.Error(codes.InvalidArgument, "vproc: an exec's signal is for its program, here")
	case req.Exec:
		return p.s.execSignal(req.GetOrigin(), req.CallerUid, t.ID, sig)
	case t.Group:
		signaled, denied := p.s.killGroupHere(req.CallerUid, t.ID, sig)
		return &vprocv1.KillReply{Signaled: int32(signaled), Denied: int32(denied)}, nil
	case req.Here:
		pid, err := p.s.runsHere(t.ID)
		if err != nil {
			return nil, err
		}
		return p.s.killHere(req.CallerUid, t.ID, pid, sig)
	}
	return p.s.kill(ctx, req.CallerUid, t.ID, sig, req.Request, true)
}

// Renice renices, for a caller of the origin, a process this node
// answers for or runs (here).
func (p signalPeer) Renice(ctx context.Context, req *vprocpeerv1.PeerRenice) (*vprocv1.ReniceReply, error) {
	if err := p.s.peers.RequireNode(ctx, req.GetOrigin()); err != nil {
		return nil, err
	}
	if req.Request == nil {
		return nil, status.Error(codes.InvalidArgument, "vproc: empty renice request")
	}
	c, err := checkCPID(req.Request.Cpid)
	if err != nil {
		return nil, err
	}
	if req.Here {
		pid, err := p.s.runsHere(c)
		if err != nil {
			return nil, err
		}
		return p.s.reniceHere(req.CallerUid, c, pid, int(req.Request.Nice))
	}
	return p.s.renice(ctx, req.CallerUid, c, req.Request, true)
}

// runsHere is the pid of the program x started through vprocd that runs
// here, as the node that answers for x found.
func (s *Server) runsHere(x cpid.CPID) (int32, error) {
	if pid, ok := s.record(x); ok {
		return pid, nil
	}
	return 0, status.Errorf(codes.NotFound, "vproc: no process %s (node %d)", x, s.cfg.Node)
}

// signalPeer returns the signal service of node n's vprocd, which
// answers for c: a FailedPrecondition status when n is DOWN or unknown.
func (s *Server) signalPeer(ctx context.Context, n uint32, c cpid.CPID) (vprocpeerv1.VprocSignalPeerClient, error) {
	if _, err := s.upNode(n); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%s (it has cpid %s)", status.Convert(err).Message(), c)
	}
	conn, err := s.peer(ctx, n)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "vproc: node %d's vprocd cannot be reached: %v", n, err)
	}
	return vprocpeerv1.NewVprocSignalPeerClient(conn), nil
}

// execSignal delivers a signal of the caller of program c's exec, sent
// by its origin beside the exec stream, as the stream's Signal input
// would be (execRecord.signal). Only the origin of that exec, for the
// caller that started it, may.
func (s *Server) execSignal(origin, caller uint32, c cpid.CPID, sig syscall.Signal) (*vprocv1.KillReply, error) {
	s.recs.mu.Lock()
	rec := s.recs.m[c]
	s.recs.mu.Unlock()
	switch {
	case !allowedSignals[int32(sig)]:
		return nil, status.Errorf(codes.InvalidArgument, "vproc: signal %d may not be sent to a program", sig)
	case rec == nil || rec.signal == nil:
		return nil, status.Errorf(codes.NotFound, "vproc: no process %s (node %d)", c, s.cfg.Node)
	case rec.origin.node != origin || rec.origin.uid != caller:
		return nil, status.Errorf(codes.PermissionDenied, "vproc: %s is no program of an exec of uid %d on node %d", c, caller, origin)
	}
	if err := rec.signal(sig); err != nil {
		return nil, processError(c, s.cfg.Node, err)
	}
	return &vprocv1.KillReply{Signaled: 1}, nil
}

// killHere signals process c, which runs here, for uid caller: the
// caller must be root or the process's real owner.
func (s *Server) killHere(caller uint32, c cpid.CPID, pid int32, sig syscall.Signal) (*vprocv1.KillReply, error) {
	h, err := s.openLocal(c, pid)
	if err != nil {
		return nil, err
	}
	defer h.close()
	if err := access.Signal(caller, h.st.uid, c); err != nil {
		return nil, status.Error(codes.PermissionDenied, "vproc: "+err.Error())
	}
	if err := h.signal(sig); err != nil {
		return nil, processError(c, s.cfg.Node, err)
	}
	s.log.WithField("cpid", c).WithField("caller", caller).WithField("signal", int(sig)).Debug("signaled a process")
	return &vprocv1.KillReply{Signaled: 1}, nil
}

// reniceHere sets the nice value of c, which runs here, for uid caller.
func (s *Server) reniceHere(caller uint32, c cpid.CPID, pid int32, nice int) (*vprocv1.ReniceReply, error) {
	h, err := s.openLocal(c, pid)
	if err != nil {
		return nil, err
	}
	defer h.close()
	old := h.st.nice
	if err := access.Renice(caller, h.st.uid, c, old, nice); err != nil {
		code := codes.PermissionDenied
		if errors.Is(err, access.ErrNice) {
			code = codes.InvalidArgument
		}
		return nil, status.Error(code, "vproc: "+err.Error())
	}
	// Still the process checked (the pid was not reused since)?
	if err := h.signal(0); err != nil {
		return nil, processError(c, s.cfg.Node, err)
	}
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, int(h.pid), nice); err != nil {
		return nil, processError(c, s.cfg.Node, err)
	}
	return &vprocv1.ReniceReply{OldNice: int32(old), Nice: int32(nice)}, nil
}

// openLocal opens the process c, pid here.
func (s *Server) openLocal(c cpid.CPID, pid int32) (*pidHandle, error) {
	h, err := openProc(pid)
	if err != nil {
		return nil, processError(c, s.cfg.Node, err)
	}
	return h, nil
}

// processError is the status of a failure to act on process c here.
func processError(c cpid.CPID, node uint32, err error) error {
	switch {
	case errors.Is(err, errNoProcess):
		return status.Errorf(codes.NotFound, "vproc: no process %s (node %d)", c, node)
	case errors.Is(err, syscall.EPERM):
		return status.Errorf(codes.PermissionDenied, "vproc: process %s (node %d): %v", c, node, err)
	}
	return status.Errorf(codes.Internal, "vproc: process %s (node %d): %v", c, node, err)
}

// killGroup signals every member of cluster process group g on every UP
// node (each node signals the members that run on it, so each is reached
// once).
func (s *Server) killGroup(ctx context.Context, caller uint32, g cpid.CPID, sig syscall.Signal, req *vprocv1.KillRequest) (*vprocv1.KillReply, error) {
	var signaled, denied int
	var lastErr error
	for _, n := range s.upNodes() {
		if n == s.cfg.Node {
			a, d := s.killGroupHere(caller, g, sig)
			signaled, denied = signaled+a, denied+d
			continue
		}
		cl, err := s.signalPeer(ctx, n, g)
		if err == nil {
			var r *vprocv1.KillReply
			if r, err = cl.Kill(rpc.WithoutTimeout(ctx), &vprocpeerv1.PeerKill{Origin: s.cfg.Node, CallerUid: caller, Request: req}); err == nil {
				signaled, denied = signaled+int(r.Signaled), denied+int(r.Denied)
				continue
			}
		}
		s.log.WithError(err).WithField("peer", n).Warn("a group kill did not reach a node")
		lastErr = err
	}
	switch {
	case signaled > 0:
		return &vprocv1.KillReply{Signaled: int32(signaled), Denied: int32(denied)}, nil
	case denied > 0:
		return nil, status.Errorf(codes.PermissionDenied, "vproc: uid %d may not signal any process of group %s (only their owner or root may)", caller, g)
	case lastErr != nil:
		return nil, status.Errorf(codes.Unavailable, "vproc: no process of group %s signaled; a node was not reached: %s", g, status.Convert(lastErr).Message())
	}
	return nil, status.Errorf(codes.NotFound, "vproc: no process in group %s", g)
}

// killGroupHere signals the members of group g that run here, each only
// if caller may: on g's node its local process group, and on every node
// the process groups of the programs started through vprocd in g.
func (s *Server) killGroupHere(caller uint32, g cpid.CPID, sig syscall.Signal) (signaled, denied int) {
	seen := map[int32]bool{}
	var pids []int32
	add := func(ps []int32) {
		for _, p := range ps {
			if !seen[p] {
				seen[p] = true
				pids = append(pids, p)
			}
		}
	}
	if g.Node() == s.cfg.Node {
		add(groupPIDs(g.PID()))
	}
	for _, leader := range s.groupLeaders(g, sig) {
		add(groupPIDs(leader))
	}
	for _, pid := range pids {
		h, err := openProc(pid)
		if err != nil {
			continue
		}
		if access.Signal(caller, h.st.uid, g) != nil {
			denied++
		} else if h.signal(sig) == nil {
			signaled++
		}
		h.close()
	}
	if signaled+denied > 0 {
		s.log.WithField("cpgid", g).WithField("caller", caller).WithField("signal", int(sig)).
			WithField("signaled", signaled).WithField("denied", denied).Debug("signaled a process group")
	}
	return signaled, denied
}

// upNodes lists the nodes believed UP, this one included.
func (s *Server) upNodes() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []uint32{s.cfg.Node}
	for n, st := range s.nodes {
		if st.up && n != s.cfg.Node {
			out = append(out, n)
		}
	}
	return out
}
