package server

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"syscall"
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
	vprocv1.RegisterVprocMigrateServer(g, migrateAPI{s: a.s})
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
	if req.Node == 0 {
		req.Node = s.cfg.Node
	}
	// A migratable program is relayed through the peer service even
	// here: the relay follows it when it moves (forward).
	local := req.Node == s.cfg.Node && !req.Migratable
	var sigs <-chan *vprocv1.ExecInput
	if ps, ok := stream.(*passedStream); ok && !(local && ps.give()) {
		// Relayed: the program runs on another node, or may move, or
		// a file is the caller's own description.
		if err := ps.relay(); err != nil {
			return err
		}
		if !local {
			// From now on, not from forward's start: a signal
			// during the connection to the target must not fall
			// behind the stdin (forward, sideSignals).
			sigs = ps.signalsAside()
		}
	}
	if local {
		return s.run(ctx, stream, stream.Send, cred, req, s.originOf(caller.PID, caller.UID))
	}
	return s.forward(ctx, stream, sigs, caller, req)
}

// forward runs req on node req.Node through its vprocd, relaying the
// caller's stream both ways. When the node goes DOWN or the link breaks
// while the program runs, the caller gets ExitLost and one line.
//
// sigs, when not nil, are the caller's signals taken out of the stream
// (passedStream.signalsAside): they go beside it (sideSignals).
func (s *Server) forward(ctx context.Context, stream vprocv1.Vproc_ExecServer, sigs <-chan *vprocv1.ExecInput, caller localapi.Cred, req *vprocv1.ExecRequest) error {
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
	org := s.originOf(caller.PID, caller.UID)
	x, release := s.allocCPID(caller.PID)
	// Released before the caller hears the exit: its next exec, at
	// once, is named by the same cpid (not by its pid on the target).
	var released sync.Once
	defer released.Do(release)
	start := &vprocpeerv1.Start{
		Origin:  s.cfg.Node,
		Caller:  &vprocpeerv1.Caller{Uid: caller.UID, Gid: caller.GID, Groups: caller.Groups, Pid: caller.PID},
		Request: req,
		Cpgid:   int64(org.cpgid),
		Tty:     org.tty,
		Cpid:    int64(x),
	}
	var (
		sendMu sync.Mutex // guards ps and what the inputs said so far
		// callerEOF: the caller half-closed; stdinEOF: it closed stdin.
		// A stream attached to a moved program is told both again.
		callerEOF, stdinEOF bool
		// kept is the end of the stdin stream, sent again to a moved
		// program's new copy from where the old one stopped.
		kept stdinLog
	)
	if err := ps.Send(&vprocpeerv1.PeerExecInput{Kind: &vprocpeerv1.PeerExecInput_Start{Start: start}}); err != nil {
		return status.Errorf(codes.Unavailable, "vproc: node %d's vprocd cannot be reached: %v", n, err)
	}
	at := newExecWhere(n)
	// The caller's signals, when its stdin was passed: a stream full of
	// stdin the program does not read holds up every input behind it, so
	// they go beside it (sideSignals).
	if sigs != nil {
		// The signals a kill could not deliver, into the stream in
		// order, from a goroutine of their own: the stream may be full,
		// and the next signal must not wait for it.
		fallback := make(chan *vprocv1.ExecInput, cap(sigs))
		go func() {
			for {
				select {
				case m := <-fallback:
					sendMu.Lock()
					_ = ps.Send(&vprocpeerv1.PeerExecInput{Kind: &vprocpeerv1.PeerExecInput_Input{Input: m}})
					sendMu.Unlock()
				case <-fctx.Done():
					return
				}
			}
		}()
		go s.sideSignals(fctx, sigs, at, caller.UID, func(m *vprocv1.ExecInput) {
			select {
			case fallback <- m:
			default:
				s.log.WithField("signal", m.GetSignal()).Warn("a caller's signal dropped: the kills and the stream both stuck")
			}
		})
	}
	// The caller's inputs, as they come, to the program's node of the
	// moment.
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					sendMu.Lock()
					callerEOF = true
					_ = ps.CloseSend()
					sendMu.Unlock()
				}
				return
			}
			if CheckInput(m) != nil {
				continue // the target would drop it too
			}
			sendMu.Lock()
			stdinEOF = stdinEOF || m.GetStdinEof()
			if req.Migratable {
				kept.add(m.GetStdin())
			}
			// A send that fails: the replies say why (or the program
			// moved, and the next stream takes the inputs).
			_ = ps.Send(&vprocpeerv1.PeerExecInput{Kind: &vprocpeerv1.PeerExecInput_Input{Input: m}})
			sendMu.Unlock()
		}
	}()
	type reply struct {
		gen int
		m   *vprocv1.ExecOutput
		err error
	}
	replies := make(chan reply, 1)
	read := func(ps vprocpeerv1.VprocPeer_ExecClient, gen int) {
		for {
			m, err := ps.Recv()
			select {
			case replies <- reply{gen, m, err}:
			case <-fctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}
	gen := 0
	go read(ps, gen)
	gotAny, started, recorded := false, false, false
	var cpidNow int64 // the program's, from its Started
	// follow reattaches the relay to the node a program moved to; an
	// error is the caller's Exit.
	follow := func(mv *vprocv1.Moved) error {
		nps, ndown, err := s.attachTo(fctx, mv, cpidNow)
		if err != nil {
			s.log.WithError(err).WithField("node", mv.Node).Warn("cannot reach a program that moved")
			return stream.Send(exitOf(ExitLost, 0, "the program moved to node "+strconv.FormatUint(uint64(mv.Node), 10)+" but cannot be reached there: "+status.Convert(err).Message()))
		}
		sendMu.Lock()
		ps = nps
		gen++
		taken := mv.StdinTaken
		if taken < 0 {
			taken = kept.sent // not known: send nothing again
		}
		rest, lost := kept.from(taken)
		for _, b := range rest {
			_ = ps.Send(&vprocpeerv1.PeerExecInput{Kind: &vprocpeerv1.PeerExecInput_Input{Input: &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Stdin{Stdin: b}}}})
		}
		if lost > 0 {
			s.log.WithField("cpid", cpidNow).WithField("bytes", lost).Warn("a moved program lost stdin its old copy had not taken")
		}
		if stdinEOF {
			_ = ps.Send(&vprocpeerv1.PeerExecInput{Kind: &vprocpeerv1.PeerExecInput_Input{Input: &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_StdinEof{StdinEof: true}}}})
		}
		if callerEOF {
			_ = ps.CloseSend()
		}
		sendMu.Unlock()
		go read(nps, gen)
		n, down = mv.Node, ndown
		at.moved(n)
		return nil
	}
	// movedAway: the program's node went DOWN during a move that this
	// node, its arbiter, commits without it (package migrate: the
	// target asks to commit when the source is DOWN).
	movedAway := func() *vprocv1.Moved {
		if !req.Migratable || !started {
			return nil
		}
		return s.movedAway(ctx, cpidNow, n)
	}
	for {
		select {
		case <-down:
			if mv := movedAway(); mv != nil {
				if err := follow(mv); err != nil {
					return err
				}
				continue
			}
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
					if err != nil && started && !req.Detach {
						s.killGone(n, caller.UID, cpidNow)
					}
					return ctx.Err()
				}
			case <-t.C:
				if started && !req.Detach {
					s.killGone(n, caller.UID, cpidNow)
				}
				return ctx.Err()
			case <-down:
				return ctx.Err()
			}
			for {
				select {
				case r := <-replies:
					if r.gen == gen && (r.err != nil || r.m.GetExit() != nil) {
						return ctx.Err()
					}
				case <-t.C:
					return ctx.Err()
				case <-down:
					return ctx.Err()
				}
			}
		case r := <-replies:
			if r.gen != gen {
				continue // the stream of a node the program left
			}
			if r.err != nil {
				if req.Migratable && started && !errors.Is(r.err, io.EOF) {
					// Its node may be going DOWN during a move: wait
					// for the word a little.
					t := time.NewTimer(followWait)
					select {
					case <-down:
					case <-t.C:
					}
					t.Stop()
				}
				select {
				case <-down:
					if mv := movedAway(); mv != nil {
						if err := follow(mv); err != nil {
							return err
						}
						continue
					}
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
			if mv := r.m.GetMoved(); mv != nil && started {
				// The program moved: its output so far is all here;
				// the rest comes from its new node.
				if err := follow(mv); err != nil {
					return err
				}
				continue
			}
			gotAny = true
			if st := r.m.GetStarted(); st != nil {
				if started {
					// The copy on the node it moved to: the origin's
					// table learns its pid there; the caller knew
					// it started.
					if c, err := checkCPID(cpidNow); err == nil {
						_ = s.pgStep(pgroup.Moved{Proc: pgroup.Proc{CPID: c, Node: n, PID: st.Pid}})
					}
					s.migLocate(cpidNow, n)
					continue
				}
				started = true
				cpidNow = st.Cpid
				at.start(cpidNow)
				if req.Migratable {
					s.migLocate(cpidNow, n)
				}
				if x != 0 && st.Cpid == int64(x) {
					// This node answers for it now (package pgroup).
					recorded = s.pgStep(pgroup.Started{Proc: pgroup.Proc{CPID: x, Node: n, PID: st.Pid, PGID: org.cpgid,
						UID: caller.UID, TTY: org.tty, Detached: req.Detach}}) == nil
				}
			}
			if recorded && r.m.GetExit() != nil {
				_ = s.pgStep(pgroup.Ended{CPID: x, Node: n})
			}
			if req.Migratable && r.m.GetExit() != nil {
				s.migLocate(cpidNow, 0)
			}
			if r.m.GetExit() != nil {
				released.Do(release)
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

// attachTo opens the stream of a program that moved (Moved) to its new
// node, and returns it with that node's DOWN channel.
func (s *Server) attachTo(ctx context.Context, mv *vprocv1.Moved, x int64) (vprocpeerv1.VprocPeer_ExecClient, <-chan struct{}, error) {
	down, err := s.upNode(mv.Node)
	if err != nil {
		return nil, nil, err
	}
	conn, err := s.peer(ctx, mv.Node)
	if err != nil {
		return nil, nil, err
	}
	ps, err := vprocpeerv1.NewVprocPeerClient(conn).Exec(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := ps.Send(&vprocpeerv1.PeerExecInput{Kind: &vprocpeerv1.PeerExecInput_Attach{Attach: &vprocpeerv1.Attach{Origin: s.cfg.Node, Cpid: x, Move: mv.Move}}}); err != nil {
		return nil, nil, err
	}
	return ps, down, nil
}

// lostLine is the one line of an exec whose node was lost.
func lostLine(n uint32, what string) string {
	return "node " + strconv.FormatUint(uint64(n), 10) + " " + what + " while the program ran"
}

// callerGoneWait bounds how long an origin waits for the target to end
// the program of a caller gone.
const callerGoneWait = 2 * time.Second

// killGone kills, on node n, the program of cpid x whose caller (uid) is
// gone but could not be told so on its stream: its window is full of
// stdin the program does not read. The target would take the stream's
// end for the origin lost, and let the program run; a kill is a call of
// its own.
func (s *Server) killGone(n, uid uint32, x int64) {
	log := s.log.WithField("node", n).WithField("cpid", x)
	if err := s.peerKill(context.Background(), n, uid, x, syscall.SIGKILL, false); err != nil {
		log.WithError(err).Warn("cannot end the program of a caller gone")
		return
	}
	log.Debug("caller gone, its stream full: killed the program")
}

// execWhere is where an exec's program runs, for the signals sent beside
// its stream: its node of the moment and its cpid, once started.
type execWhere struct {
	mu      sync.Mutex
	n       uint32
	x       int64
	started chan struct{} // closed once x is set
}

func newExecWhere(n uint32) *execWhere { return &execWhere{n: n, started: make(chan struct{})} }

// start records the program's cpid (its first Started).
func (w *execWhere) start(x int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.x == 0 && x != 0 {
		w.x = x
		close(w.started)
	}
}

// moved records the node the program moved to.
func (w *execWhere) moved(n uint32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n = n
}

func (w *execWhere) get() (uint32, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, w.x
}

// sideMoveTries and sideMoveWait bound how long a signal sent beside the
// stream follows a program that is moving (its old node answers NotFound
// until the origin follows it).
const (
	sideMoveTries = 10
	sideMoveWait  = 100 * time.Millisecond
)

// sideSignals delivers the caller's signals beside the exec's stream, in
// order, each as a kill of its own (PeerKill.exec) to the program's node
// of the moment: those that came before the program started wait for its
// start. A signal the stream would drop (CheckInput) is dropped. One the
// kill cannot deliver (the program gone, a node unreachable) goes into
// the stream through inStream, which must not wait for the stream; one
// whose kill timed out does not (it may have been delivered). An older
// target vprocd, which does not know PeerKill.exec, delivers it to the
// program's process alone.
func (s *Server) sideSignals(ctx context.Context, sigs <-chan *vprocv1.ExecInput, at *execWhere, uid uint32, inStream func(*vprocv1.ExecInput)) {
	select {
	case <-at.started:
	case <-ctx.Done():
		return
	}
	for {
		var m *vprocv1.ExecInput
		select {
		case m = <-sigs:
		case <-ctx.Done():
			return
		}
		if CheckInput(m) != nil {
			continue
		}
		var err error
		for try := 0; try < sideMoveTries; try++ {
			n, x := at.get()
			err = s.peerKill(ctx, n, uid, x, syscall.Signal(m.GetSignal()), true)
			if status.Code(err) != codes.NotFound {
				break
			}
			select {
			case <-time.After(sideMoveWait):
			case <-ctx.Done():
				return
			}
		}
		switch {
		case err == nil || ctx.Err() != nil:
		case status.Code(err) == codes.DeadlineExceeded:
			s.log.WithError(err).WithField("signal", m.GetSignal()).Debug("a caller's signal beside the stream timed out (it may have been delivered)")
		default:
			inStream(m)
		}
	}
}

// peerKill signals program x, which runs on node n, for its caller uid,
// as a call of its own beside the exec's stream (bounded by
// callerGoneWait): exec delivers it as the stream's Signal input would
// (PeerKill.exec), else to the process alone.
func (s *Server) peerKill(ctx context.Context, n, uid uint32, x int64, sig syscall.Signal, exec bool) error {
	ctx, cancel := context.WithTimeout(ctx, callerGoneWait)
	defer cancel()
	cl, err := s.signalPeer(ctx, n, cpidOf(x))
	if err == nil {
		_, err = cl.Kill(ctx, &vprocpeerv1.PeerKill{Origin: s.cfg.Node, CallerUid: uid, Here: true, Exec: exec,
			Request: &vprocv1.KillRequest{Cpid: x, Signal: int32(sig)}})
	}
	return err
}
