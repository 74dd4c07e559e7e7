package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/level"
	"github.com/openssi/openssi/daemons/vprocd/load"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// This file is the shell of daemons/vprocd/level, the load leveler: every
// period (RunLevel) it finds the programs started through vprocd that run
// here, measures the load of those registered for load leveling and
// movable (level.Tracker, proctable.Busy), asks level.Decide with this
// node's load vector (level.Steady: a spike held back for a period) and
// the freshest heard (the load window), and
// carries a move out through migrateHere as root, one at a time. Its
// decisions are kept (level.History) for `ssi loadlevel status`.

// DefaultLevelPeriod is the leveler's default balancing period.
const DefaultLevelPeriod = 2 * time.Second

// LevelerConfig configures the load leveler.
type LevelerConfig struct {
	// Enabled runs it (vprocd.leveler.enabled, true by default in
	// openssi.yaml; off in a zero Config).
	Enabled bool
	// Period is how often it decides (default DefaultLevelPeriod).
	Period time.Duration
	// CoolDown and Stability are level.Config's (0: its defaults).
	CoolDown  time.Duration
	Stability float64
	// Source, when set, replaces what the leveler measures in /proc:
	// tests, whose in-process nodes share one machine, inject each
	// node's run queue and each process's load with it.
	Source LevelSource
}

// LevelSource gives the leveler its loads in place of /proc.
type LevelSource interface {
	// RunQueue is node's runnable tasks, the run queue of its load
	// vector (in place of LoadConfig.Runnable).
	RunQueue(node uint32) (uint32, error)
	// ProcLoad is the load, in runnable tasks, of process x (pid here)
	// on node.
	ProcLoad(node uint32, x cpid.CPID, pid int32) float64
}

// leveler is the Server's load leveler.
type leveler struct {
	cfg  LevelerConfig
	lcfg level.Config

	mu     sync.Mutex
	tr     *level.Tracker
	hist   *level.History
	steady level.Steady // this node's own vector, a spike held back
	// moving is the process being moved by the leveler (0: none), to
	// movingTo.
	moving   cpid.CPID
	movingTo uint32
	// settleUntil: no decision before it (settle).
	settleUntil time.Time
}

// settle holds decisions back for two periods after a move ended here or
// a process arrived: until then this node's run queue still counts the
// move's own work (criu's dump or restore, the copy starting), which
// Steady, the lower of two readings a period apart, lets through only
// once two readings came after it; and the peers' vectors are older than
// the move. In the lab, moves every period from those readings overshot
// (a fifth move from 6/0/0, then moves back).
func (lv *leveler) settle(now time.Time) {
	if t := now.Add(2 * lv.cfg.Period); t.After(lv.settleUntil) {
		lv.settleUntil = t
	}
}

func newLeveler(self uint32, cfg LevelerConfig) *leveler {
	if cfg.Period <= 0 {
		cfg.Period = DefaultLevelPeriod
	}
	lcfg := level.Config{CoolDown: cfg.CoolDown, Stability: cfg.Stability}
	return &leveler{cfg: cfg, lcfg: lcfg, tr: level.NewTracker(self, cfg.CoolDown), hist: level.NewHistory(level.DefaultHistory)}
}

// settings are the leveler's effective cool-down and stability factor.
func (lv *leveler) settings() (time.Duration, float64) {
	cd, st := lv.lcfg.CoolDown, lv.lcfg.Stability
	if cd <= 0 {
		cd = level.DefaultCoolDown
	}
	if !(st > 1) {
		st = level.DefaultStability
	}
	return cd, st
}

// RunLevel runs the load leveler, one decision every period, until ctx
// ends. Turned off, it records that it is, and moves nothing.
func (s *Server) RunLevel(ctx context.Context) {
	t := time.NewTicker(s.lev.cfg.Period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.levelTick(ctx, time.Now())
	}
}

// levelTick is one balancing period at now.
func (s *Server) levelTick(ctx context.Context, now time.Time) {
	lv := s.lev
	if !lv.cfg.Enabled {
		lv.add(level.Entry{First: now, Last: now, Count: 1, Kind: level.KindDisabled,
			Reason: "no move: the load leveler is off (vprocd.leveler.enabled: false)"})
		return
	}
	lv.mu.Lock()
	moving, to, until := lv.moving, lv.movingTo, lv.settleUntil
	lv.mu.Unlock()
	if moving != 0 {
		lv.add(level.Entry{First: now, Last: now, Count: 1, Kind: level.KindInFlight, Proc: moving, From: s.cfg.Node, To: to,
			Reason: fmt.Sprintf("no move: the move of %v to node %d has not ended (one at a time)", moving, to)})
		return
	}
	if now.Before(until) {
		lv.add(level.Entry{First: now, Last: now, Count: 1, Kind: level.KindInFlight, From: s.cfg.Node,
			Reason: "no move: settling for two periods after a move here, until loads measured after it come"})
		return
	}
	cands := s.levelCandidates(now)
	s.load.mu.Lock()
	es := s.load.w.Vectors(now)
	s.load.mu.Unlock()
	lv.mu.Lock()
	vectors := make([]load.Vector, 0, len(es))
	for _, e := range es {
		if e.Self {
			e.Vector = lv.steady.Add(e.Vector)
		}
		vectors = append(vectors, e.Vector)
	}
	procs, skipped := lv.tr.Procs(now, cands)
	d := level.Decide(lv.lcfg, level.Input{Now: now, Self: s.cfg.Node, Nodes: vectors, Procs: procs})
	if !d.Move {
		if sk := skipped.String(); d.Kind == level.KindNothing && sk != "" {
			d.Reason += " (" + sk + ")"
		}
		lv.hist.Add(level.EntryOf(now, d))
		lv.mu.Unlock()
		return
	}
	lv.moving, lv.movingTo = d.Proc, d.To
	lv.mu.Unlock()
	go s.levelMove(ctx, now, d)
}

// add records an entry of the history.
func (lv *leveler) add(e level.Entry) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	lv.hist.Add(e)
}

// levelMove carries a decision out as root and records how it ended: a
// failed move leaves the process where it was, not tried again within the
// cool-down.
func (s *Server) levelMove(ctx context.Context, at time.Time, d level.Decision) {
	log := s.log.WithField("cpid", d.Proc).WithField("to", d.To)
	log.WithField("reason", d.Reason).Info("load leveler: moving a process")
	_, err := s.migrateHere(ctx, 0, d.Proc, d.To)
	now := time.Now()
	e := level.EntryOf(at, d)
	e.Last = now
	lv := s.lev
	lv.mu.Lock()
	defer lv.mu.Unlock()
	lv.moving, lv.movingTo = 0, 0
	lv.settle(now)
	if err == nil {
		e.Kind = level.KindMoved
		e.Reason = "moved: " + d.Reason
		// The copy starts on the target a moment after the commit: a
		// vector measured within a load interval of it may not show it
		// yet, and is corrected as one that does not (erring toward
		// fewer moves, never toward a second one to the same peer).
		lv.tr.Moved(d.Proc, s.cfg.Node, d.To, now.Add(s.load.cfg.Interval), d.ProcLoad)
	} else {
		e.Kind = level.KindFailed
		e.Reason = fmt.Sprintf("failed: %s (decided: %s)", strings.TrimPrefix(status.Convert(err).Message(), "vproc: "), d.Reason)
		lv.tr.Failed(d.Proc, now)
		log.WithError(err).Info("load leveler: a move failed; the process stays")
	}
	lv.hist.Add(e)
}

// levelArrived records that x arrived here from node from by a move (its
// cool-down starts).
func (s *Server) levelArrived(x cpid.CPID, from uint32) {
	lv := s.lev
	lv.mu.Lock()
	defer lv.mu.Unlock()
	lv.settle(time.Now())
	lv.tr.Moved(x, from, s.cfg.Node, time.Now(), 0)
}

// levelCandidates are the programs started through vprocd that run here,
// with what the leveler needs of each (a program not started migratable
// is not looked at further: its program is not read, it cannot move).
func (s *Server) levelCandidates(now time.Time) []level.Candidate {
	type found struct {
		x          cpid.CPID
		pid        int32
		argv0      string
		notMovable string
		rec        *execRecord // a migratable one, to ask how it moves
	}
	var fs []found
	s.recs.mu.Lock()
	for x, rec := range s.recs.m {
		f := found{x: x, pid: rec.pid}
		switch {
		case rec.mig == nil:
			f.notMovable = "not started migratable"
		case !rec.attached:
			f.notMovable = "the node of its ssi exec went down"
		default:
			f.rec = rec
		}
		if rec.mig != nil && len(rec.mig.prog.GetArgv()) > 0 {
			f.argv0 = string(rec.mig.prog.GetArgv()[0])
		}
		fs = append(fs, f)
	}
	s.recs.mu.Unlock()
	r := s.reader()
	src := s.lev.cfg.Source
	cands := make([]level.Candidate, 0, len(fs))
	for _, f := range fs {
		if f.rec != nil {
			// Cooperative, or CRIU where it can dump it (reads /proc:
			// not under the records' lock).
			if ch := s.moveChoice(f.rec); ch.Mech == 0 {
				f.notMovable = ch.Reason
			}
		}
		c := level.Candidate{ID: f.x, Registered: f.argv0 != "" && s.load.leveled(load.ProgramOf(f.argv0)), NotMovable: f.notMovable, Load: -1}
		if c.Registered && c.NotMovable == "" {
			if src != nil {
				c.Load = src.ProcLoad(s.cfg.Node, f.x, f.pid)
			} else if start, busy, err := r.Busy(f.pid); err == nil {
				c.Sample, c.Sampled = level.Sample{PID: f.pid, Start: start, Busy: busy, At: now}, true
			}
		}
		cands = append(cands, c)
	}
	return cands
}

// LevelStatus returns the leveler's settings, the loads this node
// believes and its recent decisions (`ssi loadlevel status`).
func (a loadAPI) LevelStatus(context.Context, *vprocv1.LevelStatusRequest) (*vprocv1.LevelStatusReply, error) {
	s := a.s
	now := time.Now()
	lv := s.lev
	cd, st := lv.settings()
	r := &vprocv1.LevelStatusReply{Node: s.cfg.Node, NowUnixNano: now.UnixNano(), Enabled: lv.cfg.Enabled,
		PeriodNano: int64(lv.cfg.Period), CoolDownNano: int64(cd), Stability: st}
	s.load.mu.Lock()
	es := s.load.w.Vectors(now)
	s.load.mu.Unlock()
	for _, e := range es {
		r.Loads = append(r.Loads, &vprocv1.LoadEntry{Vector: vectorProto(e.Vector), Self: e.Self,
			HeardUnixNano: e.Heard.UnixNano(), InFlight: uint32(e.InFlight), Score: e.Score})
	}
	slices.SortFunc(r.Loads, func(a, b *vprocv1.LoadEntry) int { return int(a.Vector.Node) - int(b.Vector.Node) })
	lv.mu.Lock()
	hist := lv.hist.Entries()
	r.Moving, r.MovingTo = int64(lv.moving), lv.movingTo
	lv.mu.Unlock()
	for _, e := range hist {
		r.Decisions = append(r.Decisions, &vprocv1.LevelDecision{FirstUnixNano: e.First.UnixNano(), LastUnixNano: e.Last.UnixNano(),
			Count: uint32(e.Count), Kind: string(e.Kind), Cpid: int64(e.Proc), From: e.From, To: e.To,
			ProcLoad: e.ProcLoad, FromLoad: e.FromLoad, ToLoad: e.ToLoad, Reason: e.Reason})
	}
	return r, nil
}
