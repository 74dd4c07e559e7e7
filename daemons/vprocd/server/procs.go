package server

import (
	"context"
	"errors"
	"math"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/pgroup"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// clusterProcs is the shell of package pgroup's Core: which node answers
// for a cpid (its origin, or the DOWN origin's surrogate) and where its
// process runs. The core is stepped under mu; what it asks for is done
// after.
type clusterProcs struct {
	mu   sync.Mutex
	core *pgroup.Core
	// epoch counts membership changes when the caller gives no epoch
	// (tests); clmsd's epochs otherwise.
	epoch   uint64
	nextID  uint64
	waiting map[uint64]chan pgroup.Answer
	// reserved are cpids handed to execs not confirmed yet.
	reserved map[cpid.CPID]bool
}

// pgSendTimeout bounds one Report or Ended to a peer.
const pgSendTimeout = 5 * time.Second

func newClusterProcs(self uint32) clusterProcs {
	c := pgroup.New(pgroup.Config{Self: self})
	c.Start(0, []uint32{self})
	return clusterProcs{core: c, waiting: map[uint64]chan pgroup.Answer{}, reserved: map[cpid.CPID]bool{}}
}

// pgStep steps the core with ev and does what it asks.
func (s *Server) pgStep(ev pgroup.Event) error {
	s.cp.mu.Lock()
	err := s.cp.core.Step(time.Now(), ev)
	rd, next := s.cp.core.Ready(), s.cp.core.NextDeadline()
	s.cp.mu.Unlock()
	s.pgApply(rd, next)
	return err
}

func (s *Server) pgTick() {
	s.cp.mu.Lock()
	s.cp.core.Tick(time.Now())
	rd, next := s.cp.core.Ready(), s.cp.core.NextDeadline()
	s.cp.mu.Unlock()
	s.pgApply(rd, next)
}

// pgApply does what the core asked: reports and ends to peers, its own
// hangups (a kill's signals are delivered by the kill, from its answer),
// and the answers to the requests waiting for them.
func (s *Server) pgApply(rd pgroup.Ready, next time.Time) {
	if !next.IsZero() {
		time.AfterFunc(time.Until(next), s.pgTick)
	}
	for _, m := range rd.Sends {
		go s.pgSend(m)
	}
	for _, sg := range rd.Signals {
		if sg.Group && sg.Caller == 0 && sg.Node == s.cfg.Node {
			s.hangup(sg)
		}
	}
	s.cp.mu.Lock()
	defer s.cp.mu.Unlock()
	for _, a := range rd.Answers {
		if ch := s.cp.waiting[a.ID]; ch != nil {
			delete(s.cp.waiting, a.ID)
			ch <- a
		}
	}
}

// hangup delivers the core's own SIGHUP to the process group that a
// program of a DOWN origin leads here, if it still leads it.
func (s *Server) hangup(sg pgroup.Signal) {
	h, err := openProc(sg.PID)
	if err != nil {
		return
	}
	defer h.close()
	if h.st.pgrp != sg.PID {
		return
	}
	s.log.WithField("cpid", sg.CPID).WithField("signal", int(sg.Signal)).Info("the origin went DOWN: signaling the program of a caller that had a terminal there")
	_ = syscall.Kill(-int(sg.PID), sg.Signal)
}

// pgSend sends a Report or an Ended to a peer.
func (s *Server) pgSend(m pgroup.Send) {
	ctx, cancel := context.WithTimeout(context.Background(), pgSendTimeout)
	defer cancel()
	log := s.log.WithField("peer", m.To)
	conn, err := s.peer(ctx, m.To)
	if err != nil {
		log.WithError(err).Warn("cannot tell a peer of cluster processes")
		return
	}
	cl := vprocpeerv1.NewVprocSignalPeerClient(conn)
	switch {
	case m.Report != nil:
		r := &vprocpeerv1.PeerReport{From: m.Report.From, Origin: m.Report.Origin, Epoch: m.Report.Epoch}
		for _, p := range m.Report.Procs {
			r.Procs = append(r.Procs, &vprocpeerv1.Proc{Cpid: int64(p.CPID), Node: p.Node, Pid: p.PID, Pgid: int64(p.PGID), Sid: int64(p.SID),
				Uid: p.UID, Tty: p.TTY, Detached: p.Detached})
		}
		_, err = cl.Report(ctx, r)
	case m.Ended != nil:
		_, err = cl.Ended(ctx, &vprocpeerv1.PeerEnded{Cpid: int64(m.Ended.CPID), Node: m.Ended.Node, Pid: m.Ended.PID})
	}
	if err != nil {
		log.WithError(err).Warn("cannot tell a peer of cluster processes")
	}
}

// pgMembership steps a membership change (epoch 0: the next of this
// node's count).
func (s *Server) pgMembership(epoch uint64, n uint32, up bool) {
	s.cp.mu.Lock()
	if epoch == 0 {
		epoch = s.cp.epoch + 1
	}
	s.cp.epoch = max(s.cp.epoch, epoch)
	s.cp.mu.Unlock()
	if up {
		_ = s.pgStep(pgroup.NodeUp{Epoch: epoch, Node: n})
	} else {
		_ = s.pgStep(pgroup.NodeDown{Epoch: epoch, Node: n})
	}
}

// pgLookup asks the core where x runs; the answer may wait (at most
// pgroup.DefaultWait) for the reports of a DOWN origin's survivors.
func (s *Server) pgLookup(ctx context.Context, x cpid.CPID) (pgroup.Answer, error) {
	s.cp.mu.Lock()
	s.cp.nextID++
	id := s.cp.nextID
	ch := make(chan pgroup.Answer, 1)
	s.cp.waiting[id] = ch
	s.cp.mu.Unlock()
	_ = s.pgStep(pgroup.Lookup{ID: id, CPID: x})
	select {
	case a := <-ch:
		return a, nil
	case <-ctx.Done():
		s.cp.mu.Lock()
		delete(s.cp.waiting, id)
		s.cp.mu.Unlock()
		return pgroup.Answer{}, status.FromContextError(ctx.Err()).Err()
	}
}

// allocCPID is the cpid of a program started for the caller pid of this
// node: the caller's own cpid, which stands for it; 0 when that is in use
// (the caller runs another program, or a detached one holds it), and the
// target then names it by its pid there. done releases the reservation.
func (s *Server) allocCPID(pid int32) (x cpid.CPID, done func()) {
	x, err := cpid.Make(s.cfg.Node, pid)
	if err != nil {
		return 0, func() {}
	}
	s.cp.mu.Lock()
	defer s.cp.mu.Unlock()
	if s.cp.reserved[x] {
		return 0, func() {}
	}
	s.cp.nextID++
	id := s.cp.nextID
	_ = s.cp.core.Step(time.Now(), pgroup.Lookup{ID: id, CPID: x})
	rd := s.cp.core.Ready()
	for _, a := range rd.Answers {
		if a.ID == id && a.Found {
			return 0, func() {}
		}
	}
	s.cp.reserved[x] = true
	return x, func() {
		s.cp.mu.Lock()
		defer s.cp.mu.Unlock()
		delete(s.cp.reserved, x)
	}
}

// procOf is the core's Proc of a peer's.
func procOf(p *vprocpeerv1.Proc) pgroup.Proc {
	c := func(v int64) cpid.CPID {
		if v < 0 || v > math.MaxInt32 {
			return -1 // invalid: the core refuses it
		}
		return cpid.CPID(v)
	}
	return pgroup.Proc{CPID: c(p.GetCpid()), Node: p.GetNode(), PID: p.GetPid(), PGID: c(p.GetPgid()), SID: c(p.GetSid()),
		UID: p.GetUid(), TTY: p.GetTty(), Detached: p.GetDetached()}
}

// Report takes a peer's report of the processes of an origin it runs.
func (p signalPeer) Report(ctx context.Context, r *vprocpeerv1.PeerReport) (*vprocpeerv1.PeerAck, error) {
	if err := p.s.peers.RequireNode(ctx, r.GetFrom()); err != nil {
		return nil, err
	}
	rep := pgroup.Report{From: r.From, Origin: r.Origin, Epoch: r.Epoch}
	for _, x := range r.Procs {
		rep.Procs = append(rep.Procs, procOf(x))
	}
	if err := p.s.pgStep(rep); err != nil {
		return nil, status.Error(codes.InvalidArgument, "vproc: "+err.Error())
	}
	return &vprocpeerv1.PeerAck{}, nil
}

// Ended takes a peer's word that a process of this origin ended there.
func (p signalPeer) Ended(ctx context.Context, e *vprocpeerv1.PeerEnded) (*vprocpeerv1.PeerAck, error) {
	if err := p.s.peers.RequireNode(ctx, e.GetNode()); err != nil {
		return nil, err
	}
	x, err := checkCPID(e.Cpid)
	if err != nil {
		return nil, err
	}
	_ = p.s.pgStep(pgroup.Ended{CPID: x, Node: e.Node, PID: max(e.GetPid(), 0)})
	return &vprocpeerv1.PeerAck{}, nil
}

// errAnswer is the status of a lookup's refusal.
func errAnswer(err error) error {
	switch {
	case errors.Is(err, pgroup.ErrUnknown):
		return status.Error(codes.NotFound, "vproc: "+err.Error())
	case errors.Is(err, pgroup.ErrNoNode):
		return status.Error(codes.FailedPrecondition, "vproc: "+err.Error())
	}
	return status.Error(codes.InvalidArgument, "vproc: "+err.Error())
}
