package server

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/vprocd/pgroup"
	"github.com/openssi/openssi/daemons/vprocd/runner"
	"github.com/openssi/openssi/internal/localapi"
	"github.com/openssi/openssi/internal/rpc"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// ExitLost is the status of an exec whose node or connection was lost
// while the program ran (as ssh's 255).
const ExitLost = 255

// API is vprocd's local API on the node's socket.
type API struct {
	vprocv1.UnimplementedVprocServer
	s *Server
}

// NewAPI returns the local API of s.
func NewAPI(s *Server) *API { return &API{s: s} }

// Register adds the API to a gRPC server.
func (a *API) Register(g *grpc.Server) {
	vprocv1.RegisterVprocServer(g, a)
	registerLoadAPI(g, a.s)
	registerPs(g, a.s)
	vprocv1.RegisterVprocSignalServer(g, signalAPI{s: a.s})
}

// Exec runs a program for the caller of the socket, as that caller: its
// uid, gid and groups come from the kernel, never from the request.
func (a *API) Exec(stream vprocv1.Vproc_ExecServer) error {
	ctx := stream.Context()
	caller, ok := localapi.CallerFrom(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "vproc: the caller's credentials are unknown")
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	req := first.GetStart()
	if err := CheckRequest(req); err != nil {
		if req.GetPassedStdio() != 0 {
			// Its files came with it: taken and closed here, or the
			// connection's next exec would find them.
			for _, f := range localapi.FilesFrom(ctx).Take() {
				f.Close()
			}
		}
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if req.PassedStdio != 0 {
		// The caller's stdio files came with the request: a program
		// of this node gets them as its own stdio; for one of another
		// node this vprocd reads and writes them (no peer sees them),
		// and an output whose reader went away is broken for the
		// program too, or ends the exec (see passedStream.broken).
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		ps, err := passFiles(ctx, stream, req.PassedStdio, cancel)
		if err != nil {
			return err
		}
		defer ps.close()
		req.PassedStdio = 0
		stream = ps
		defer func() { ps.endBroken() }()
	}
	cred := runner.Cred{UID: caller.UID, GID: caller.GID, Groups: caller.Groups}
	s := a.s
	switch {
	case req.Trace != nil:
		// strace runs where the process does.
		n, err := s.locate(ctx, cpidOf(req.Trace.Cpid), false)
		if err != nil {
			return err
		}
		req.Node = n
	case req.Node == 0:
		req.Node = s.levelNode(req.Argv) // a program placed by load
	}
	local := req.Node == 0 || req.Node == s.cfg.Node
	if ps, ok := stream.(*passedStream); ok && !(local && ps.give()) {
		// Relayed: the program runs on another node (or a file is
		// the caller's own description).
		if err := ps.relay(); err != nil {
			return err
		}
	}
	if local {
		req.Node = s.cfg.Node
		return s.run(ctx, stream, stream.Send, cred, req, s.originOf(caller.PID))
	}
	return s.forward(ctx, stream, caller, req)
}

// forward runs req on node req.Node through its vprocd, relaying the
// caller's stream both ways. When the node goes DOWN or the link breaks
// while the program runs, the caller gets ExitLost and one line.
func (s *Server) forward(ctx context.Context, stream vprocv1.Vproc_ExecServer, caller localapi.Cred, req *vprocv1.ExecRequest) error {
	n := req.Node
	down, err := s.upNode(n)
	if err != nil {
		return err
	}
	conn, err := s.peer(ctx, n)
	if err != nil {
		return status.Errorf(codes.Unavailable, "vproc: node %d's vprocd cannot be reached: %v", n, err)
	}
	// The stream to the target outlives the caller's by a little: a caller
	// gone is told to the target (see below) before the stream ends.
	fctx, cancel := context.WithCancel(rpc.WithoutTimeout(context.WithoutCancel(ctx)))
	defer cancel()
	ps, err := vprocpeerv1.NewVprocPeerClient(conn).Exec(fctx)
	if err != nil {
		return status.Errorf(codes.Unavailable, "vproc: node %d's vprocd cannot be reached: %v", n, err)
	}
	org := s.originOf(caller.PID)
	x, release := s.allocCPID(caller.PID)
	defer release()
	start := &vprocpeerv1.Start{
		Origin:  s.cfg.Node,
		Caller:  &vprocpeerv1.Caller{Uid: caller.UID, Gid: caller.GID, Groups: caller.Groups, Pid: caller.PID},
		Request: req,
		Cpgid:   int64(org.cpgid),
		Tty:     org.tty,
		Cpid:    int64(x),
	}
	var sendMu sync.Mutex
	if err := ps.Send(&vprocpeerv1.PeerExecInput{Kind: &vprocpeerv1.PeerExecInput_Start{Start: start}}); err != nil {
		return status.Errorf(codes.Unavailable, "vproc: node %d's vprocd cannot be reached: %v", n, err)
	}
	// The caller's inputs, as they come.
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					sendMu.Lock()
					_ = ps.CloseSend()
					sendMu.Unlock()
				}
				return
			}
			if CheckInput(m) != nil {
				continue // the target would drop it too
			}
			sendMu.Lock()
			err = ps.Send(&vprocpeerv1.PeerExecInput{Kind: &vprocpeerv1.PeerExecInput_Input{Input: m}})
			sendMu.Unlock()
			if err != nil {
				return // the replies say why
			}
		}
	}()
	type reply struct {
		m   *vprocv1.ExecOutput
		err error
	}
	replies := make(chan reply, 1)
	go func() {
		for {
			m, err := ps.Recv()
			select {
			case replies <- reply{m, err}:
			case <-fctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	gotAny, started, recorded := false, false, false
	for {
		select {
		case <-down:
			s.log.WithField("node", n).Info("the node of an exec went DOWN: ending it")
			return stream.Send(exitOf(ExitLost, 0, lostLine(n, "went down")))
		case <-ctx.Done():
			// The caller is gone while this node lives: the target
			// kills the program at once (a stream that merely
			// breaks is the origin lost, which it waits to see).
			// Wait a little for it to end, so that the message is not
			// cut off by the stream's end. A send that cannot go (the
			// stream's window full of stdin the program does not
			// read) is not waited for past that: the stream then
			// breaks, and the target decides as for a link lost.
			sent := make(chan error, 1)
			go func() {
				sendMu.Lock()
				err := ps.Send(&vprocpeerv1.PeerExecInput{Kind: &vprocpeerv1.PeerExecInput_CallerGone{CallerGone: true}})
				if err == nil {
					_ = ps.CloseSend()
				}
				sendMu.Unlock()
				sent <- err
			}()
			t := time.NewTimer(callerGoneWait)
			defer t.Stop()
			select {
			case err := <-sent:
				if err != nil || (started && req.Detach) {
					return ctx.Err()
				}
			case <-t.C:
				return ctx.Err()
			case <-down:
				return ctx.Err()
			}
			for {
				select {
				case r := <-replies:
					if r.err != nil || r.m.GetExit() != nil {
						return ctx.Err()
					}
				case <-t.C:
					return ctx.Err()
				case <-down:
					return ctx.Err()
				}
			}
		case r := <-replies:
			if r.err != nil {
				select {
				case <-down:
					// The link broke because the node went down:
					// say that, not the broken link.
					return stream.Send(exitOf(ExitLost, 0, lostLine(n, "went down")))
				default:
				}
			}
			switch {
			case r.err == nil:
			case errors.Is(r.err, io.EOF):
				if started && req.Detach {
					return nil
				}
				return stream.Send(exitOf(ExitLost, 0, lostLine(n, "closed the connection")))
			default:
				if !gotAny {
					if st, ok := status.FromError(r.err); ok && st.Code() != codes.Unavailable && st.Code() != codes.Canceled {
						return r.err // refused: the target's reason, as is
					}
				}
				return stream.Send(exitOf(ExitLost, 0, lostLine(n, "lost the connection")))
			}
			gotAny = true
			if st := r.m.GetStarted(); st != nil {
				started = true
				if x != 0 && st.Cpid == int64(x) {
					// This node answers for it now (package pgroup).
					recorded = s.pgStep(pgroup.Started{Proc: pgroup.Proc{CPID: x, Node: n, PID: st.Pid, PGID: org.cpgid,
						UID: caller.UID, TTY: org.tty, Detached: req.Detach}}) == nil
				}
			}
			if recorded && r.m.GetExit() != nil {
				_ = s.pgStep(pgroup.Ended{CPID: x, Node: n})
			}
			if err := stream.Send(r.m); err != nil {
				return err
			}
			if r.m.GetExit() != nil {
				return nil
			}
		}
	}
}

// lostLine is the one line of an exec whose node was lost.
func lostLine(n uint32, what string) string {
	return "node " + strconv.FormatUint(uint64(n), 10) + " " + what + " while the program ran"
}

// callerGoneWait bounds how long an origin waits for the target to end
// the program of a caller gone.
const callerGoneWait = 2 * time.Second
