// Package systemdfake is a recording stand-in for systemd's D-Bus API
// (initfailover's server.Systemd), for tests on hosts where systemd is
// not PID 1: units are states in memory, and every change lands, with
// its time and node, in a Timeline shared by the nodes of a test, so a
// test can check that no two nodes ran a singleton at once.
package systemdfake

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/openssi/openssi/daemons/initfailover/server"
)

// Event is one change of a unit.
type Event struct {
	Time   time.Time
	Node   uint32
	Unit   string
	Active bool
	// Op is what caused it: start, stop, kill, restart.
	Op string
}

func (e Event) String() string {
	return fmt.Sprintf("%s node %d %s %s active=%v", e.Time.Format("15:04:05.000"), e.Node, e.Op, e.Unit, e.Active)
}

// Timeline records the events of every node.
type Timeline struct {
	mu     sync.Mutex
	events []Event
}

// Events returns a copy of the events so far, in order.
func (t *Timeline) Events() []Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.events)
}

func (t *Timeline) add(e Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events = append(t.events, e)
}

// Overlaps returns, for unit, every moment two nodes had it active at
// once ("" none).
func (t *Timeline) Overlaps(unit string) []string {
	var out []string
	active := map[uint32]bool{}
	for _, e := range t.Events() {
		if e.Unit != unit {
			continue
		}
		active[e.Node] = e.Active
		var on []uint32
		for n, a := range active {
			if a {
				on = append(on, n)
			}
		}
		if len(on) > 1 {
			slices.Sort(on)
			out = append(out, fmt.Sprintf("%v: nodes %v", e, on))
		}
	}
	return out
}

// Systemd is one node's fake systemd.
type Systemd struct {
	node uint32
	tl   *Timeline

	mu      sync.Mutex
	active  map[string]bool
	known   map[string]bool
	wants   map[string][]string
	partOf  map[string][]string
	since   map[string]time.Time
	hang    map[string]bool
	stopped chan struct{} // closed and replaced on every change
	// isolatable are the units with AllowIsolate=yes; isolated is the
	// last target isolated.
	isolatable map[string]bool
	isolated   string
	// isolateTakes is how long an isolate job runs before it changes
	// anything (negative: until its context ends).
	isolateTakes time.Duration
}

// New returns node's fake systemd knowing units (all inactive), recording
// into tl.
func New(node uint32, tl *Timeline, units ...string) *Systemd {
	s := &Systemd{node: node, tl: tl, active: map[string]bool{}, known: map[string]bool{}, wants: map[string][]string{}, partOf: map[string][]string{},
		since: map[string]time.Time{}, hang: map[string]bool{}, stopped: make(chan struct{}), isolatable: map[string]bool{}}
	for _, u := range units {
		s.known[u] = true
	}
	return s
}

// SetWants makes unit want others.
func (s *Systemd) SetWants(unit string, others ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wants[unit] = others
}

// SetPartOf makes unit PartOf= others.
func (s *Systemd) SetPartOf(unit string, others ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partOf[unit] = others
}

// PartOf lists what unit is PartOf=.
func (s *Systemd) PartOf(_ context.Context, unit string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.partOf[unit]), nil
}

// Hang makes a stop of unit never finish: only a kill stops it.
func (s *Systemd) Hang(unit string, hang bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hang[unit] = hang
}

// Active reports whether unit is active.
func (s *Systemd) Active(unit string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active[unit]
}

func (s *Systemd) set(unit string, active bool, op string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.known[unit] {
		return fmt.Errorf("systemdfake: %s: %w", unit, server.ErrNoUnit)
	}
	if s.active[unit] != active || op == "restart" {
		s.active[unit] = active
		s.since[unit] = time.Now()
		s.tl.add(Event{Time: time.Now(), Node: s.node, Unit: unit, Active: active, Op: op})
		close(s.stopped)
		s.stopped = make(chan struct{})
	}
	return nil
}

// Start starts unit.
func (s *Systemd) Start(_ context.Context, unit string) error { return s.set(unit, true, "start") }

// Restart restarts unit.
func (s *Systemd) Restart(_ context.Context, unit string) error { return s.set(unit, true, "restart") }

// Stop stops unit, or waits (hung) until it is killed or ctx ends.
func (s *Systemd) Stop(ctx context.Context, unit string) error {
	for {
		s.mu.Lock()
		hang, active, ch := s.hang[unit], s.active[unit], s.stopped
		s.mu.Unlock()
		if !hang || !active {
			return s.set(unit, false, "stop")
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Kill stops unit at once when sig is SIGKILL.
func (s *Systemd) Kill(_ context.Context, unit string, sig syscall.Signal) error {
	if sig != syscall.SIGKILL {
		return nil
	}
	return s.set(unit, false, "kill")
}

// Enable records nothing: the fake has no unit files.
func (s *Systemd) Enable(_ context.Context, unit string) error { return s.check(unit) }

// Disable records nothing.
func (s *Systemd) Disable(_ context.Context, unit string) error { return s.check(unit) }

func (s *Systemd) check(unit string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.known[unit] {
		return fmt.Errorf("systemdfake: %s: %w", unit, server.ErrNoUnit)
	}
	return nil
}

// Status reports unit's state; an active service's main pid is 100.
func (s *Systemd) Status(_ context.Context, unit string) (server.UnitStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.known[unit] {
		return server.UnitStatus{LoadState: "not-found", ActiveState: "inactive"}, fmt.Errorf("systemdfake: %s: %w", unit, server.ErrNoUnit)
	}
	st := server.UnitStatus{LoadState: "loaded", ActiveState: "inactive", SubState: "dead", Since: s.since[unit]}
	if s.active[unit] {
		st.ActiveState, st.SubState, st.MainPID = "active", "running", 100
	}
	return st, nil
}

// Wants lists what unit wants.
func (s *Systemd) Wants(_ context.Context, unit string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.wants[unit]), nil
}

// Close does nothing.
func (s *Systemd) Close() {}

// SetAllowIsolate gives unit AllowIsolate=yes (or no).
func (s *Systemd) SetAllowIsolate(unit string, allow bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.isolatable[unit] = allow
}

// Deps reports unit's AllowIsolate and what it wants (SetWants).
func (s *Systemd) Deps(_ context.Context, unit string) (server.UnitDeps, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.known[unit] {
		return server.UnitDeps{}, fmt.Errorf("systemdfake: %s: %w", unit, server.ErrNoUnit)
	}
	return server.UnitDeps{AllowIsolate: s.isolatable[unit], Pulls: slices.Clone(s.wants[unit])}, nil
}

// Isolate starts target and what it wants, transitively, and stops every
// other active unit, as systemd's isolate job.
func (s *Systemd) Isolate(ctx context.Context, target string) error {
	s.mu.Lock()
	takes := s.isolateTakes
	s.mu.Unlock()
	if takes != 0 {
		var after <-chan time.Time
		if takes > 0 {
			t := time.NewTimer(takes)
			defer t.Stop()
			after = t.C
		}
		select {
		case <-after:
		case <-ctx.Done():
			return fmt.Errorf("systemdfake: isolate %s: %w", target, ctx.Err())
		}
	}
	s.mu.Lock()
	if !s.known[target] {
		s.mu.Unlock()
		return fmt.Errorf("systemdfake: %s: %w", target, server.ErrNoUnit)
	}
	if !s.isolatable[target] {
		s.mu.Unlock()
		return fmt.Errorf("systemdfake: isolate %s: AllowIsolate=no", target)
	}
	keep := map[string]bool{}
	queue := []string{target}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		if keep[u] || !s.known[u] {
			continue
		}
		keep[u] = true
		queue = append(queue, s.wants[u]...)
	}
	var stop, start []string
	for u, a := range s.active {
		if a && !keep[u] {
			stop = append(stop, u)
		}
	}
	for u := range keep {
		if !s.active[u] {
			start = append(start, u)
		}
	}
	s.isolated = target
	s.mu.Unlock()
	slices.Sort(stop)
	slices.Sort(start)
	for _, u := range stop {
		if err := s.set(u, false, "isolate"); err != nil {
			return err
		}
	}
	for _, u := range start {
		if err := s.set(u, true, "isolate"); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// IsolateTakes makes every isolate job run d before it changes anything
// (negative: until its caller gives up; 0: at once).
func (s *Systemd) IsolateTakes(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.isolateTakes = d
}

// Isolated returns the last target isolated ("" none).
func (s *Systemd) Isolated() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isolated
}
