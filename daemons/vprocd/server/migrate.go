package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/daemons/vprocd/access"
	"github.com/openssi/openssi/daemons/vprocd/coop"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/migrate"
	"github.com/openssi/openssi/daemons/vprocd/pgroup"
	"github.com/openssi/openssi/daemons/vprocd/runner"
	"github.com/openssi/openssi/internal/criu"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// This file is the shell of package migrate's Node: it carries the
// protocol's messages on the peer links (VprocMigratePeer), does its
// actions on the programs started migratable (cooplink.go: the
// checkpoint socket) and hands a moved program's stdio over (moved.go).
//
// The actions, for a cooperative move:
//
//	Freeze  (source) CHECKPOINT, receive STATE; the Image carries it
//	Restore (target) start the same executable as the same caller with
//	        OPENSSI_RESTORE=1, send STATE, wait RESTORED
//	Resume  (target) RESUME; the copy is recorded here and waits for the
//	        origin's Attach (its output waits in its pipes)
//	End     (source) kill the frozen original; its exec stream ends with
//	        Moved once its output is drained, and the origin attaches to
//	        the target
//	Thaw    (source) RESUME the original (only if it was checkpointed)
//	Discard (target) kill the restored copy

// MigrateConfig configures migration.
type MigrateConfig struct {
	// Core is the move protocol's timing (its Node and Incarnation are
	// set by New).
	Core migrate.Config
	// StateLimit bounds a cooperative program's state
	// (vprocd.migrate.coop_state_limit; 0: coop.DefaultStateLimit).
	StateLimit int
	// CRIU is what vprocd found of CRIU at start (criu.Detect): the
	// mechanism of programs that do not speak the cooperative protocol,
	// when Ready (criu.go).
	CRIU criu.State
}

// Waits of the shell.
const (
	// checkpointWait bounds a program's answer to CHECKPOINT.
	checkpointWait = 10 * time.Second
	// attachWait bounds the wait of a resumed copy for its origin's
	// Attach, and of an Attach for its copy's Resume.
	attachWait = 30 * time.Second
	// moveSendTimeout bounds one message to a peer.
	moveSendTimeout = 5 * time.Second
	// imageChunk is the size of the state's pieces on the peer link.
	imageChunk = 1 << 20
	// maxIncomingImages bounds the images received at once: each may
	// hold up to the state limit in memory.
	maxIncomingImages = 4
)

// errTooManyImages refuses an Image past maxIncomingImages.
var errTooManyImages = status.Errorf(codes.ResourceExhausted, "vproc: %d moves are arriving here already; try again", maxIncomingImages)

// mover is the migrate.Node and what the shell holds for its moves.
type mover struct {
	mu    sync.Mutex
	node  *migrate.Node
	timer *time.Timer
	// results wait for the Result of moves asked here.
	results map[migrate.ID]chan error
	// states are the checkpoints taken (source) until the move ends.
	states map[migrate.ID][]byte
	// images are received (target) until Restore takes them.
	images map[migrate.ID]*image
	// receiving counts the Image streams being read (maxIncomingImages).
	receiving int
	// copies are restored (target) until resumed and attached, or
	// discarded.
	copies map[migrate.ID]*copyHere
	// epoch is the last view's, as the core numbers them.
	epoch uint64
	// held unmark the originals checkpointed here (held.go).
	held map[migrate.ID]func()
}

// image is what a target receives: the program and its state.
type image struct {
	prog  *vprocpeerv1.MovedProgram
	state []byte
}

// copyHere is a program restored here for a move.
type copyHere struct {
	move   migrate.Move
	prog   *vprocpeerv1.MovedProgram
	p      *runner.Proc
	link   *coopLink
	done   func() // uncounts it (admit)
	cpid   cpid.CPID
	org    execOrigin
	taken  bool          // an Attach serves it (or it was dropped)
	ready  chan struct{} // closed on Resume
	unmark func()        // held.go
	// scoped, when not nil, is closed once the copy's scope is made (or
	// failed): it is resumed only then.
	scoped <-chan struct{}
}

// migProg is what a program started migratable carries: its checkpoint
// link, what the target needs to start it again, and, once a move
// committed, where it went.
type migProg struct {
	link *coopLink
	prog *vprocpeerv1.MovedProgram
	p    *runner.Proc

	mu    sync.Mutex
	moved *vprocv1.Moved
	// in keeps its stdin whole across a move (movestdin.go).
	in migStdin
}

func (m *migProg) setMoved(mv *vprocv1.Moved) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.moved = mv
}

func (m *migProg) movedTo() *vprocv1.Moved {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.moved
}

func newMover(self uint32, cfg migrate.Config) *mover {
	cfg.Node = self
	cfg.Incarnation = uint64(time.Now().UnixNano())
	n := migrate.New(cfg)
	n.Start(time.Now(), 0, []uint32{self})
	return &mover{node: n, results: map[migrate.ID]chan error{}, states: map[migrate.ID][]byte{},
		images: map[migrate.ID]*image{}, copies: map[migrate.ID]*copyHere{}, held: map[migrate.ID]func(){}}
}

// migStep runs f on the core under its lock and does what it asks.
func (s *Server) migStep(f func(n *migrate.Node, now time.Time)) {
	m := s.mig
	m.mu.Lock()
	now := time.Now()
	f(m.node, now)
	rd := m.node.Ready()
	if next := m.node.NextDeadline(); !next.IsZero() {
		if m.timer != nil {
			m.timer.Stop()
		}
		m.timer = time.AfterFunc(time.Until(next), func() { s.migStep(func(n *migrate.Node, now time.Time) { n.Tick(now) }) })
	}
	// Take what the actions need while the lock is held.
	var restores []*image
	for _, a := range rd.Actions {
		if a.Kind == migrate.Restore {
			restores = append(restores, m.images[a.Move.ID])
			delete(m.images, a.Move.ID)
		}
	}
	m.mu.Unlock()
	s.migApply(rd, restores)
}

// migApply does what the core asked: the new locations, the actions, the
// messages and the results.
func (s *Server) migApply(rd migrate.Ready, restores []*image) {
	// The new locations first: an End below, or the Decided a message
	// takes to the source, ends the original, and its Ended (of its old
	// node) must find the origin's table already pointing at the new
	// node, or it deletes the process from the table.
	for _, l := range rd.Locations {
		if l.Node == s.cfg.Node {
			continue // recorded with its pid when it resumes here
		}
		if err := s.pgStep(pgroup.Moved{Proc: pgroup.Proc{CPID: cpid.CPID(l.CPID), Node: l.Node}}); err != nil {
			s.log.WithError(err).Warn("cannot record where a process moved")
		}
	}
	for _, a := range rd.Actions {
		mv := a.Move
		log := s.log.WithField("move", mv.ID.String()).WithField("cpid", cpid.CPID(mv.CPID))
		log.WithField("action", a.Kind.String()).Debug("migration")
		switch a.Kind {
		case migrate.Freeze:
			go s.freeze(mv)
		case migrate.Thaw:
			go s.thaw(mv)
		case migrate.End:
			s.end(mv)
		case migrate.Restore:
			img := restores[0]
			restores = restores[1:]
			go s.restore(mv, img)
		case migrate.Resume:
			go s.resume(mv)
		case migrate.Discard:
			go s.discard(mv)
		}
	}
	for _, msg := range rd.Messages {
		go s.sendMove(msg)
	}
	if len(rd.Results) > 0 {
		s.mig.mu.Lock()
		for _, r := range rd.Results {
			if ch := s.mig.results[r.Move.ID]; ch != nil {
				delete(s.mig.results, r.Move.ID)
				ch <- r.Err
			}
			if r.Err != nil {
				s.log.WithField("move", r.Move.ID.String()).WithError(r.Err).Info("a migration failed")
			} else {
				s.log.WithField("move", r.Move.ID.String()).WithField("cpid", cpid.CPID(r.Move.CPID)).WithField("node", r.Move.Target).Info("a process moved")
			}
		}
		s.mig.mu.Unlock()
	}
}

// migMembership gives the core clmsd's view after a change.
func (s *Server) migMembership(epoch uint64) {
	s.mu.Lock()
	var up []uint32
	for n, st := range s.nodes {
		if st.up {
			up = append(up, n)
		}
	}
	s.mu.Unlock()
	slices.Sort(up)
	s.migStep(func(n *migrate.Node, now time.Time) {
		// The core takes a view only at a higher epoch, and clmsd's view
		// at start gives every node at one epoch: number the changes
		// within an epoch (ballots need only be ordered, see package
		// migrate).
		e := max(epoch<<epochShift, s.mig.epoch+1)
		s.mig.epoch = e
		n.Membership(now, e, up)
	})
}

// epochShift leaves room for the changes within one of clmsd's epochs.
const epochShift = 16

// migLocate tells the core, as the arbiter of this origin's moves, where
// a migratable program of this origin runs (0: it ended), as this node's
// relay of its exec sees it: a move whose source is gone is committed
// only onto a copy not known to run elsewhere (migrate.Node.Locate).
func (s *Server) migLocate(x int64, node uint32) {
	if c, err := checkCPID(x); err == nil && c.Node() == s.cfg.Node {
		s.migStep(func(n *migrate.Node, _ time.Time) { n.Locate(uint64(c), node) })
	}
}

// migrating is the migratable program x that runs here.
func (s *Server) migrating(x cpid.CPID) (*execRecord, bool) {
	s.recs.mu.Lock()
	defer s.recs.mu.Unlock()
	rec := s.recs.m[x]
	if rec == nil || rec.mig == nil {
		return nil, false
	}
	return rec, true
}

// freeze checkpoints the source's program.
func (s *Server) freeze(mv migrate.Move) {
	var err error
	rec, ok := s.migrating(cpid.CPID(mv.CPID))
	var state []byte
	if !ok {
		err = errors.New("the process no longer runs here")
	} else if mv.Mech == migrate.CRIU {
		state, err = s.criuFreeze(rec.mig.p.Pid, rec.mig.prog.GetUid()) // criu.go
	} else {
		state, err = rec.mig.link.checkpoint(checkpointWait)
	}
	unmark := func() {}
	if err == nil {
		rec.mig.in.startHolding()
		unmark = s.markHeld(rec.mig.p.Pid)
	}
	s.migStep(func(n *migrate.Node, now time.Time) {
		if err == nil {
			s.mig.states[mv.ID] = state
			s.mig.held[mv.ID] = unmark
		}
		n.Frozen(now, mv.ID, err)
	})
}

// thaw resumes the source's program after a failed move, if it was
// checkpointed (one that answered the checkpoint with an Error runs on).
func (s *Server) thaw(mv migrate.Move) {
	s.mig.mu.Lock()
	_, frozen := s.mig.states[mv.ID]
	delete(s.mig.states, mv.ID)
	s.mig.mu.Unlock()
	defer s.unheld(mv.ID)
	if !frozen {
		return
	}
	if rec, ok := s.migrating(cpid.CPID(mv.CPID)); ok {
		rec.mig.in.release(rec.mig.p)
		resume := rec.mig.link.resume
		if mv.Mech == migrate.CRIU {
			resume = func() error { return rec.mig.p.Signal(syscall.SIGCONT) }
		}
		if err := resume(); err != nil {
			s.log.WithError(err).WithField("cpid", cpid.CPID(mv.CPID)).Warn("cannot resume a program after a failed move")
		}
	}
}

// end ends the frozen original of a committed move: its exec stream then
// says Moved once its output is drained (serve).
func (s *Server) end(mv migrate.Move) {
	s.mig.mu.Lock()
	delete(s.mig.states, mv.ID)
	s.mig.mu.Unlock()
	defer s.unheld(mv.ID)
	rec, ok := s.migrating(cpid.CPID(mv.CPID))
	if !ok {
		return
	}
	rec.mig.setMoved(&vprocv1.Moved{Node: mv.Target, Move: moveName(mv.ID)})
	rec.mig.in.openPipe(rec.mig.p)
	rec.mig.p.Kill()
}

// unheld removes the mark of the original of move id (held.go).
func (s *Server) unheld(id migrate.ID) {
	s.mig.mu.Lock()
	unmark := s.mig.held[id]
	delete(s.mig.held, id)
	s.mig.mu.Unlock()
	if unmark != nil {
		unmark()
	}
}

// restore starts the program again here with its state, stopped before
// its first visible step, and reports to the core.
func (s *Server) restore(mv migrate.Move, img *image) {
	c, err := s.restoreCopy(mv, img)
	s.migStep(func(n *migrate.Node, now time.Time) {
		if err == nil {
			s.mig.copies[mv.ID] = c
		}
		n.Restored(now, mv.ID, err)
	})
}

func (s *Server) restoreCopy(mv migrate.Move, img *image) (*copyHere, error) {
	if mv.Mech == migrate.CRIU {
		return s.criuRestore(mv, img) // criu.go
	}
	if mv.Mech != migrate.Cooperative {
		return nil, fmt.Errorf("mechanism %s is not available on node %d", mv.Mech, s.cfg.Node)
	}
	if img == nil {
		return nil, errors.New("no image")
	}
	pr := img.prog
	cred := runner.Cred{UID: pr.Uid, GID: pr.Gid, Groups: pr.Groups}
	done, err := s.admit(cred.UID)
	if err != nil {
		return nil, err
	}
	link, err := newCoopLink(s.cfg.CoopDir, cred.UID, cred.GID, coop.Limits{State: s.cfg.Migrate.StateLimit})
	if err != nil {
		done()
		return nil, err
	}
	spec := runner.Spec{Argv: strs(pr.Argv), Env: append(strs(pr.Env), link.env(true)...), Dir: string(pr.Cwd), Cred: cred,
		Gated: s.cfg.Scopes != nil}
	p, err := runner.Start(spec)
	if err != nil {
		link.close()
		done()
		var se *runner.StartError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%s", se.Msg)
		}
		return nil, err
	}
	x := cpid.CPID(mv.CPID)
	if pr.Nice != 0 && pr.Nice >= access.MinNice && pr.Nice <= access.MaxNice {
		// Its priority moves with it (as root: a nice value its owner
		// had, or root had set, lower than 0).
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, p.Pid, int(pr.Nice)); err != nil {
			s.log.WithError(err).Warn("cannot give a moved program its nice value")
		}
	}
	if s.cfg.Scopes != nil && !p.InScope {
		if err := s.cfg.Scopes.Scope(context.Background(), p.Pid, cred.UID, int64(x)); err != nil {
			s.log.WithError(err).Warn("program not moved to a scope of its own")
		}
	}
	p.Open()
	if err := link.accept(p.Pid, img.state); err != nil {
		p.Kill()
		p.Wait()
		p.CloseOutput()
		link.close()
		done()
		return nil, err
	}
	org := movedOrigin(x, pr)
	return &copyHere{move: mv, prog: pr, p: p, link: link, done: done, cpid: x, org: org, ready: make(chan struct{}),
		unmark: s.markHeld(p.Pid)}, nil
}

// resume lets the restored copy run: it is recorded here (ps, kill) and
// waits for its origin's Attach, its output waiting in its pipes.
func (s *Server) resume(mv migrate.Move) {
	s.mig.mu.Lock()
	c := s.mig.copies[mv.ID]
	s.mig.mu.Unlock()
	if c == nil {
		return
	}
	resume := c.link.resume
	if mv.Mech == migrate.CRIU {
		resume = func() error { return c.p.Signal(syscall.SIGCONT) }
	}
	// Recorded at once under its cpid (ps, kill: the move has committed,
	// the original is ending), and let run once its scope is made.
	s.recs.add(c.cpid, &execRecord{pid: int32(c.p.Pid), origin: c.org, attached: true,
		mig: &migProg{link: c.link, prog: c.prog, p: c.p}, signal: c.p.Signal})
	pr := pgroup.Proc{CPID: c.cpid, Node: s.cfg.Node, PID: int32(c.p.Pid), PGID: c.org.cpgid, UID: c.prog.Uid, TTY: c.org.tty}
	if err := s.pgStep(pgroup.Moved{Proc: pr}); err != nil {
		s.log.WithError(err).Warn("cannot record a moved process")
	}
	if c.scoped != nil {
		<-c.scoped // bounded by the scope's own timeout
	}
	if err := resume(); err != nil {
		s.log.WithError(err).WithField("cpid", c.cpid).Warn("cannot resume a moved program")
	}
	c.unmark()
	s.levelArrived(c.cpid, mv.Source)
	close(c.ready)
	time.AfterFunc(attachWait, func() {
		if s.takeCopy(mv.ID) == nil {
			return
		}
		s.log.WithField("cpid", c.cpid).Warn("the origin did not attach to a moved program: killing it")
		c.p.Kill()
		c.p.Wait()
		c.p.CloseOutput()
		c.link.close()
		s.ended(c.cpid)
		c.done()
	})
}

// heldCopies are the pids of the copies restored here whose move has not
// committed (or that are not resumed yet): ps leaves them out, since the
// original still runs at the source, and one not recorded would show
// under a cpid of this node's.
func (s *Server) heldCopies() map[int32]bool {
	s.mig.mu.Lock()
	defer s.mig.mu.Unlock()
	held := map[int32]bool{}
	for _, c := range s.mig.copies {
		held[int32(c.p.Pid)] = true
	}
	return held
}

// takeCopy takes the copy of move id for its Attach (or to drop it):
// nil when it is gone or taken.
func (s *Server) takeCopy(id migrate.ID) *copyHere {
	s.mig.mu.Lock()
	defer s.mig.mu.Unlock()
	c := s.mig.copies[id]
	if c == nil || c.taken {
		return nil
	}
	c.taken = true
	delete(s.mig.copies, id)
	return c
}

// discard kills the restored copy of a failed move.
func (s *Server) discard(mv migrate.Move) {
	c := s.takeCopy(mv.ID)
	if c == nil {
		return
	}
	if c.scoped != nil {
		// Not while systemd may still act on its pid, which the holder
		// would reap at once and another process could take.
		<-c.scoped
	}
	c.p.Kill()
	c.unmark()
	c.p.Wait()
	c.p.CloseOutput()
	c.link.close()
	c.done()
}

// sendMove sends one message of the protocol to its peer.
func (s *Server) sendMove(m migrate.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), moveSendTimeout)
	defer cancel()
	log := s.log.WithField("peer", m.To).WithField("message", m.String())
	if m.Kind == migrate.MsgImage {
		ctx, cancel := context.WithTimeout(context.Background(), attachWait)
		defer cancel()
		if err := s.sendImage(ctx, m); err != nil {
			log.WithError(err).Warn("cannot send a move's image")
		}
		return
	}
	conn, err := s.peer(ctx, m.To)
	if err == nil {
		_, err = vprocpeerv1.NewVprocMigratePeerClient(conn).Step(ctx, messageProto(m))
	}
	if err != nil {
		log.WithError(err).Debug("cannot send a move message")
	}
}

// sendImage sends the Image and the state after it.
func (s *Server) sendImage(ctx context.Context, m migrate.Message) error {
	s.mig.mu.Lock()
	state, ok := s.mig.states[m.Move.ID]
	s.mig.mu.Unlock()
	rec, found := s.migrating(cpid.CPID(m.Move.CPID))
	if !ok || !found {
		return errors.New("the state is gone")
	}
	conn, err := s.peer(ctx, m.To)
	if err != nil {
		return err
	}
	st, err := vprocpeerv1.NewVprocMigratePeerClient(conn).Image(ctx)
	if err != nil {
		return err
	}
	prog := proto.Clone(rec.mig.prog).(*vprocpeerv1.MovedProgram)
	if h, err := openProc(rec.pid); err == nil {
		prog.Nice = int32(h.st.nice)
		h.close()
	}
	first := &vprocpeerv1.ImageChunk{Message: messageProto(m), Program: prog, Size: uint64(len(state))}
	if err := st.Send(first); err != nil {
		return err
	}
	for off := 0; off < len(state); off += imageChunk {
		if err := st.Send(&vprocpeerv1.ImageChunk{State: state[off:min(off+imageChunk, len(state))]}); err != nil {
			return err
		}
	}
	_, err = st.CloseAndRecv()
	return err
}

// migratePeer is the peer service of migration.
type migratePeer struct {
	vprocpeerv1.UnimplementedVprocMigratePeerServer
	s *Server
}

// Step takes one message of the protocol from the peer its certificate
// names.
func (p migratePeer) Step(ctx context.Context, in *vprocpeerv1.MoveMessage) (*vprocpeerv1.PeerAck, error) {
	m, err := messageOf(in)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := p.s.peers.RequireNode(ctx, in.GetFrom()); err != nil {
		return nil, err
	}
	if m.Kind == migrate.MsgImage {
		return nil, status.Error(codes.InvalidArgument, "vproc: an image without its state")
	}
	m.From = in.GetFrom()
	p.s.migStep(func(n *migrate.Node, now time.Time) { n.Step(now, m) })
	return &vprocpeerv1.PeerAck{}, nil
}

// Image takes a move's Image and its state, at most the state limit.
func (p migratePeer) Image(st vprocpeerv1.VprocMigratePeer_ImageServer) error {
	first, err := st.Recv()
	if err != nil {
		return err
	}
	m, err := messageOf(first.GetMessage())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if err := p.s.peers.RequireNode(st.Context(), first.GetMessage().GetFrom()); err != nil {
		return err
	}
	m.From = first.GetMessage().GetFrom()
	limit := p.s.stateLimit()
	pr := first.GetProgram()
	switch {
	case m.Kind != migrate.MsgImage:
		return status.Error(codes.InvalidArgument, "vproc: an image stream without the image")
	case first.Size > limit:
		return status.Errorf(codes.ResourceExhausted, "vproc: a state of %d bytes, over the limit of %d (vprocd.migrate.coop_state_limit)", first.Size, limit)
	case pr == nil || len(pr.Groups) > MaxGroups:
		return status.Error(codes.InvalidArgument, "vproc: an image without its program")
	}
	if err := CheckRequest(&vprocv1.ExecRequest{Argv: pr.Argv, Env: pr.Env, Cwd: pr.Cwd}); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	// Bounded: each stream may hold up to the limit in memory, and it
	// grows with what comes, not with what the first message says.
	p.s.mig.mu.Lock()
	if p.s.mig.receiving >= maxIncomingImages {
		p.s.mig.mu.Unlock()
		return errTooManyImages
	}
	p.s.mig.receiving++
	p.s.mig.mu.Unlock()
	defer func() {
		p.s.mig.mu.Lock()
		p.s.mig.receiving--
		p.s.mig.mu.Unlock()
	}()
	state := make([]byte, 0, min(first.Size, imageChunk))
	for uint64(len(state)) < first.Size {
		c, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return status.Error(codes.InvalidArgument, "vproc: an image cut short")
			}
			return err
		}
		if uint64(len(state)+len(c.State)) > first.Size {
			return status.Error(codes.InvalidArgument, "vproc: an image longer than it said")
		}
		state = append(state, c.State...)
	}
	s := p.s
	s.mig.mu.Lock()
	s.mig.images[m.Move.ID] = &image{prog: pr, state: state}
	s.mig.mu.Unlock()
	s.migStep(func(n *migrate.Node, now time.Time) { n.Step(now, m) })
	// Not taken by a Restore: the core refused it (it answered why).
	s.mig.mu.Lock()
	delete(s.mig.images, m.Move.ID)
	s.mig.mu.Unlock()
	return st.SendAndClose(&vprocpeerv1.PeerAck{})
}

// Migrate moves a process that runs here (here), or finds where it runs
// for a caller of the origin.
func (p migratePeer) Migrate(ctx context.Context, req *vprocpeerv1.PeerMigrate) (*vprocv1.MigrateReply, error) {
	if err := p.s.peers.RequireNode(ctx, req.GetOrigin()); err != nil {
		return nil, err
	}
	x, err := checkCPID(req.GetRequest().GetCpid())
	if err != nil {
		return nil, err
	}
	if req.Here {
		return p.s.migrateHere(ctx, req.CallerUid, x, req.GetRequest().GetNode())
	}
	return p.s.migrateTo(ctx, req.CallerUid, x, req.GetRequest().GetNode(), true)
}

// migrateAPI is the local API of `ssi migrate`.
type migrateAPI struct {
	vprocv1.UnimplementedVprocMigrateServer
	s *Server
}

// Migrate moves a process for the caller of the socket.
func (a migrateAPI) Migrate(ctx context.Context, req *vprocv1.MigrateRequest) (*vprocv1.MigrateReply, error) {
	caller, err := callerOf(ctx)
	if err != nil {
		return nil, err
	}
	x, err := checkCPID(req.GetCpid())
	if err != nil {
		return nil, err
	}
	if req.Node == 0 || req.Node > cpid.MaxNode {
		return nil, status.Errorf(codes.InvalidArgument, "vproc: %d is not a node number", req.Node)
	}
	return a.s.migrateTo(ctx, caller.UID, x, req.Node, false)
}

// migrateTo finds where x runs (package pgroup, as a kill does) and moves
// it from there.
func (s *Server) migrateTo(ctx context.Context, caller uint32, x cpid.CPID, to uint32, fromPeer bool) (*vprocv1.MigrateReply, error) {
	a, err := s.pgLookup(ctx, x)
	if err != nil {
		return nil, err
	}
	ask := func(n uint32, here bool) (*vprocv1.MigrateReply, error) {
		if _, err := s.upNode(n); err != nil {
			return nil, err
		}
		conn, err := s.peer(ctx, n)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "vproc: node %d's vprocd cannot be reached: %v", n, err)
		}
		return vprocpeerv1.NewVprocMigratePeerClient(conn).Migrate(ctx, &vprocpeerv1.PeerMigrate{Origin: s.cfg.Node, CallerUid: caller,
			Request: &vprocv1.MigrateRequest{Cpid: int64(x), Node: to}, Here: here})
	}
	switch {
	case a.Err != nil:
		return nil, errAnswer(a.Err)
	case a.Redirect != 0 && fromPeer:
		return nil, status.Errorf(codes.FailedPrecondition, "vproc: node %d does not answer for cpid %s (node %d does)", s.cfg.Node, x, a.Redirect)
	case a.Redirect != 0:
		return ask(a.Redirect, false)
	case a.Found && a.Proc.Node != s.cfg.Node:
		return ask(a.Proc.Node, true)
	}
	return s.migrateHere(ctx, caller, x, to)
}

// migrateHere moves the program x that runs here to node to, for uid
// caller (its owner or root), and waits for the move's end.
func (s *Server) migrateHere(ctx context.Context, caller uint32, x cpid.CPID, to uint32) (*vprocv1.MigrateReply, error) {
	pid, ok := s.record(x)
	if !ok {
		if h, err := openProc(x.PID()); err == nil && x.Node() == s.cfg.Node {
			h.close()
			return nil, status.Errorf(codes.FailedPrecondition, "vproc: process %s was not started migratable (ssi exec --migratable): it cannot move", x)
		}
		return nil, status.Errorf(codes.NotFound, "vproc: no process %s (node %d)", x, s.cfg.Node)
	}
	h, err := s.openLocal(x, pid)
	if err != nil {
		return nil, err
	}
	owner := h.st.uid
	h.close()
	if err := accessMigrate(caller, owner, x); err != nil {
		return nil, err
	}
	rec, ok := s.migrating(x)
	if !ok {
		return nil, status.Errorf(codes.FailedPrecondition, "vproc: process %s was not started migratable (ssi exec --migratable): it cannot move", x)
	}
	if !s.attachedNow(x) {
		// Its origin went DOWN: no exec relays its stdio, none would
		// attach to its copy.
		return nil, status.Errorf(codes.FailedPrecondition, "vproc: process %s cannot move: the node of the ssi exec that started it went down", x)
	}
	choice := s.moveChoiceSettled(rec) // criu.go
	if choice.Mech == 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "vproc: process %s cannot move: %s", x, choice.Reason)
	}
	ch := make(chan error, 1)
	var merr error
	s.migStep(func(n *migrate.Node, now time.Time) {
		var mv migrate.Move
		mv, merr = n.Migrate(now, uint64(x), x.Node(), to, choice.Mech)
		if merr == nil {
			s.mig.results[mv.ID] = ch
		}
	})
	switch {
	case errors.Is(merr, migrate.ErrBusy), errors.Is(merr, migrate.ErrMoving):
		return nil, status.Errorf(codes.Unavailable, "vproc: process %s: %s", x, strings.TrimPrefix(merr.Error(), "migrate: "))
	case merr != nil:
		return nil, status.Errorf(codes.FailedPrecondition, "vproc: process %s: %s", x, strings.TrimPrefix(merr.Error(), "migrate: "))
	}
	select {
	case err := <-ch:
		if err != nil {
			return nil, status.Errorf(codes.Aborted, "vproc: process %s stays on node %d: %s", x, s.cfg.Node, strings.TrimPrefix(err.Error(), "migrate: "))
		}
		return &vprocv1.MigrateReply{Node: to, From: s.cfg.Node}, nil
	case <-ctx.Done():
		// The move goes on; its result is for the log.
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// attachedNow says whether an exec still waits for the program x here.
func (s *Server) attachedNow(x cpid.CPID) bool {
	s.recs.mu.Lock()
	defer s.recs.mu.Unlock()
	rec := s.recs.m[x]
	return rec != nil && rec.attached
}
