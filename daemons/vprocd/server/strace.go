package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/runner"
	"github.com/openssi/openssi/daemons/vprocd/straceargs"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// `ssi strace CPID [ARGS]` is an exec whose request says what to trace
// (vprocv1.Trace) instead of a command: the caller's vprocd locates the
// node the process runs on (through the node that answers for its cpid,
// as a kill does) and sends the exec there; that node's vprocd resolves
// its own pid of the process and builds strace's command line, which then
// runs, streams and ends like any program of `ssi exec`, as the caller.

// straceDirs is where strace is looked for on the node (the system's
// PATH, not the caller's: a program of the caller's named strace is
// `ssi exec`'s business).
var straceDirs = filepath.SplitList("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")

// checkTrace returns why a trace request is refused, or nil.
func checkTrace(t *vprocv1.Trace) error {
	if _, err := checkCPID(t.Cpid); err != nil {
		return fmt.Errorf("%s", status.Convert(err).Message())
	}
	if err := straceargs.Check(strs(t.Args)); err != nil {
		return fmt.Errorf("vproc: %w", err)
	}
	return nil
}

// locate returns the node that runs process x, as a kill finds it
// (onProcess): through the node that answers for its cpid (its origin,
// or a DOWN origin's surrogate). A request from a peer is not sent on to
// a third node.
func (s *Server) locate(ctx context.Context, x cpid.CPID, fromPeer bool) (uint32, error) {
	a, err := s.pgLookup(ctx, x)
	if err != nil {
		return 0, err
	}
	pid := x.PID()
	switch {
	case a.Err != nil:
		return 0, errAnswer(a.Err)
	case a.Redirect != 0 && fromPeer:
		return 0, status.Errorf(codes.FailedPrecondition, "vproc: node %d does not answer for cpid %s (node %d does)", s.cfg.Node, x, a.Redirect)
	case a.Redirect != 0:
		cl, err := s.signalPeer(ctx, a.Redirect, x)
		if err != nil {
			return 0, err
		}
		r, err := cl.Locate(ctx, &vprocpeerv1.PeerLocate{Origin: s.cfg.Node, Cpid: int64(x)})
		if err != nil {
			return 0, err
		}
		return r.Node, nil
	case a.Found && a.Proc.Node != s.cfg.Node:
		if _, err := s.upNode(a.Proc.Node); err != nil {
			return 0, status.Errorf(codes.FailedPrecondition, "%s (it has cpid %s)", status.Convert(err).Message(), x)
		}
		return a.Proc.Node, nil
	case a.Found:
		pid = a.Proc.PID
	}
	h, err := s.openLocal(x, pid)
	if err != nil {
		return 0, err
	}
	h.close()
	return s.cfg.Node, nil
}

// Locate says, for a caller of the origin, which node runs the process
// this node answers for.
func (p signalPeer) Locate(ctx context.Context, req *vprocpeerv1.PeerLocate) (*vprocpeerv1.PeerLocation, error) {
	if err := p.s.peers.RequireNode(ctx, req.GetOrigin()); err != nil {
		return nil, err
	}
	x, err := checkCPID(req.GetCpid())
	if err != nil {
		return nil, err
	}
	n, err := p.s.locate(ctx, x, true)
	if err != nil {
		return nil, err
	}
	return &vprocpeerv1.PeerLocation{Node: n}, nil
}

// tracedPID is this node's pid of process x, which the caller's vprocd
// found running here: a program started through vprocd by its record,
// else a process of this node by its cpid.
func (s *Server) tracedPID(ctx context.Context, x cpid.CPID) (int32, error) {
	if pid, ok := s.record(x); ok {
		return pid, nil
	}
	if x.Node() != s.cfg.Node {
		return 0, status.Errorf(codes.NotFound, "vproc: no process %s (node %d)", x, s.cfg.Node)
	}
	a, err := s.pgLookup(ctx, x)
	switch {
	case err != nil:
		return 0, err
	case a.Err != nil:
		return 0, errAnswer(a.Err)
	case a.Found && a.Proc.Node != s.cfg.Node:
		return 0, status.Errorf(codes.FailedPrecondition, "vproc: process %s runs on node %d, not %d", x, a.Proc.Node, s.cfg.Node)
	case a.Found:
		return a.Proc.PID, nil
	}
	return x.PID(), nil
}

// straceArgv is strace's command line tracing t.Cpid, which runs here,
// for uid caller: a status error when there is no such process or the
// caller may not trace it, a *runner.StartError when strace is not
// installed here. Only root may trace another uid's process; strace runs
// as the caller, so the kernel's ptrace rules decide the rest (a setuid
// program, Yama's ptrace_scope).
func (s *Server) straceArgv(ctx context.Context, caller uint32, t *vprocv1.Trace) ([]string, error) {
	x := cpidOf(t.Cpid)
	pid, err := s.tracedPID(ctx, x)
	if err != nil {
		return nil, err
	}
	h, err := s.openLocal(x, pid)
	if err != nil {
		return nil, err
	}
	owner := h.st.uid
	h.close()
	if caller != 0 && caller != owner {
		return nil, status.Errorf(codes.PermissionDenied, "vproc: uid %d may not trace process %s (node %d) of uid %d: only its owner or root may", caller, x, s.cfg.Node, owner)
	}
	path := findStrace(straceDirs)
	if path == "" {
		return nil, &runner.StartError{Code: runner.ExitNotFound,
			Msg: fmt.Sprintf("strace is not installed on node %d: install the strace package there", s.cfg.Node)}
	}
	return straceargs.Argv(path, pid, strs(t.Args)), nil
}

// findStrace is the first executable regular file named strace in dirs,
// or "".
func findStrace(dirs []string) string {
	for _, d := range dirs {
		p := filepath.Join(d, "strace")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	return ""
}
