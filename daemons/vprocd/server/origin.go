package server

import (
	"math"
	"sync"
	"syscall"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/runner"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// DefaultOriginGrace is how long a target waits, after the link to a
// program's origin broke, for the origin's NODEDOWN before it takes the
// break for a caller gone (and kills the program).
const DefaultOriginGrace = 10 * time.Second

// execOrigin is who started a program: the origin node, the caller's
// cluster process group there, and whether the caller had a terminal.
type execOrigin struct {
	node  uint32
	cpgid cpid.CPID
	tty   bool
	// uid is the caller's; cpid the program's, given by the origin (0:
	// named by its pid where it runs).
	uid  uint32
	cpid cpid.CPID
}

// originOf describes a caller of this node's socket, of uid uid: its
// process group (as a cluster process group) and whether it has a
// controlling terminal.
func (s *Server) originOf(pid int32, uid uint32) execOrigin {
	o := execOrigin{node: s.cfg.Node, uid: uid}
	if st, err := readProc(pid); err == nil {
		if g, err := cpid.Make(s.cfg.Node, st.pgrp); err == nil {
			o.cpgid = g
		}
		o.tty = st.tty != 0
	}
	return o
}

// startOrigin is the origin a peer's Start describes; a cluster process
// group or cpid that is no cpid of the origin is ignored (the program is
// in no group but its own, or named by its pid here).
func startOrigin(start *vprocpeerv1.Start) execOrigin {
	org := execOrigin{node: start.GetOrigin(), tty: start.GetTty(), uid: start.GetCaller().GetUid()}
	of := func(v int64) cpid.CPID {
		if v > 0 && v <= math.MaxInt32 {
			if g := cpid.CPID(v); g.Valid() && g.Node() == org.node {
				return g
			}
		}
		return 0
	}
	org.cpgid, org.cpid = of(start.GetCpgid()), of(start.GetCpid())
	return org
}

// movedOrigin is the origin of program x that moved here (by either
// mechanism), as its MovedProgram says: the node its cpid names, unless
// the program says otherwise (one its first node named by its pid there:
// its origin had given it no cpid).
func movedOrigin(x cpid.CPID, pr *vprocpeerv1.MovedProgram) execOrigin {
	org := execOrigin{node: x.Node(), tty: pr.GetTty(), uid: pr.GetUid(), cpid: x}
	if pr.GetOrigin() != 0 {
		org.node = pr.GetOrigin()
	}
	if g := cpid.CPID(pr.GetCpgid()); pr.GetCpgid() > 0 && g.Valid() {
		org.cpgid = g
	}
	return org
}

// execRecord is a program started through vprocd that runs here.
type execRecord struct {
	pid    int32
	origin execOrigin
	// attached: an exec on the origin waits for it and forwards the
	// caller's signals to it.
	attached bool
	// mig: started migratable (nil otherwise).
	mig *migProg
	// signal delivers a signal of its exec's caller as the exec
	// stream's Signal input does (runner.Proc.Signal: to its process
	// group, or its terminal's foreground group).
	signal func(syscall.Signal) error
}

// records are the programs started through vprocd that run here, by
// cpid.
type records struct {
	mu sync.Mutex
	m  map[cpid.CPID]*execRecord
}

func (r *records) add(c cpid.CPID, rec *execRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[cpid.CPID]*execRecord{}
	}
	r.m[c] = rec
}

// byPID returns the cpid of each program started through vprocd that
// runs here, by its pid here.
func (r *records) byPID() map[int32]cpid.CPID {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[int32]cpid.CPID, len(r.m))
	for c, rec := range r.m {
		m[rec.pid] = c
	}
	return m
}

func (r *records) remove(c cpid.CPID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, c)
}

func (r *records) detach(c cpid.CPID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec := r.m[c]; rec != nil {
		rec.attached = false
	}
}

// record is the program c that runs here, if vprocd started it.
func (s *Server) record(c cpid.CPID) (pid int32, ok bool) {
	s.recs.mu.Lock()
	defer s.recs.mu.Unlock()
	if rec := s.recs.m[c]; rec != nil {
		return rec.pid, true
	}
	return 0, false
}

// forwardedSignals are the signals a waiting `ssi exec` passes on to its
// program: a group kill that reaches the exec in its group on the origin
// leaves them to it rather than deliver them twice.
var forwardedSignals = map[syscall.Signal]bool{syscall.SIGHUP: true, syscall.SIGINT: true, syscall.SIGQUIT: true, syscall.SIGTERM: true}

// groupLeaders are the pids here of the programs started through vprocd
// in cluster process group g that sig is to be delivered to here.
func (s *Server) groupLeaders(g cpid.CPID, sig syscall.Signal) []int32 {
	s.recs.mu.Lock()
	defer s.recs.mu.Unlock()
	var out []int32
	for _, rec := range s.recs.m {
		if rec.origin.cpgid != g {
			continue
		}
		if forwardedSignals[sig] && rec.attached && rec.origin.node == g.Node() {
			// Its exec is in g on the origin and passes sig on.
			continue
		}
		out = append(out, rec.pid)
	}
	return out
}

// fate decides, once, what a broken link to the caller means for a
// running program: a caller gone (or any break of a local caller's
// stream) kills it; a break of a remote origin's link waits for the
// origin's NODEDOWN (at most OriginGrace): then the program runs on, as
// nohup would decide, with a SIGHUP if its caller had a terminal there
// (package pgroup's decision at the NODEDOWN); without a NODEDOWN the origin lives and the caller is taken as gone.
type fate struct {
	once   sync.Once
	s      *Server
	cpid   cpid.CPID
	origin execOrigin
	p      *runner.Proc
	kept   bool
}

// lost applies the decision (the first call decides) and reports whether
// the program was kept running.
func (f *fate) lost(callerGone bool) bool {
	f.once.Do(func() {
		log := f.s.log.WithField("cpid", f.cpid).WithField("origin", f.origin.node)
		stopping := false
		select {
		case <-f.s.stopping:
			stopping = true
		default:
		}
		if callerGone || stopping || f.origin.node == f.s.cfg.Node {
			log.Debug("caller gone: killing the program's process group")
			f.p.Kill()
			return
		}
		if down, err := f.s.upNode(f.origin.node); err == nil {
			t := time.NewTimer(f.s.cfg.OriginGrace)
			defer t.Stop()
			select {
			case <-down:
			case <-f.s.stopping:
				log.Debug("vprocd stops: killing the program's process group")
				f.p.Kill()
				return
			case <-t.C:
				log.Info("the link to the origin broke but the origin stays UP: killing the program's process group")
				f.p.Kill()
				return
			}
		}
		// The core decides the rest at the NODEDOWN: a SIGHUP if the
		// caller had a terminal there (Server.hangup).
		f.kept = true
		f.s.recs.detach(f.cpid)
		log.Info("the origin went DOWN: the program runs on, as nohup decides")
	})
	return f.kept
}

// cpidOf is the cpid of the int64 the API carries.
func cpidOf(v int64) cpid.CPID { return cpid.CPID(v) }

// LocalCPID is the cpid of process pid of this node: the one its origin
// gave it when vprocd started it for a caller of another node, else its
// own, cpid.Make(this node, pid) (0 when pid makes none). ps and
// /cluster/proc name a process by it.
func (s *Server) LocalCPID(pid int32) int64 {
	s.recs.mu.Lock()
	for x, rec := range s.recs.m {
		if rec.pid == pid {
			s.recs.mu.Unlock()
			return int64(x)
		}
	}
	s.recs.mu.Unlock()
	return CPID(s.cfg.Node, int(pid))
}
