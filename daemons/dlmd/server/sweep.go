package server

import (
	"context"
	"strings"
	"time"
)

// DefaultLockspaceGrace is how long a lockspace made on first use stays
// without locks before its record is removed.
const DefaultLockspaceGrace = 10 * time.Minute

// sweeper decides which lockspace records made on first use to remove:
// those seen without locks on every member for at least grace. It is
// pure: the caller gives the time, the records and what it saw in use.
type sweeper struct {
	grace time.Duration
	// unused is when each record was first seen without locks.
	unused map[string]time.Time
}

func newSweeper(grace time.Duration) *sweeper {
	return &sweeper{grace: grace, unused: map[string]time.Time{}}
}

// step takes the records and the names seen with locks at now, and
// returns the records to remove. Explicit and system lockspaces stay.
func (w *sweeper) step(now time.Time, recs []LockspaceRecord, inUse map[string]bool) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range recs {
		if r.Explicit || r.Config.System || strings.HasPrefix(r.Name, SystemPrefix) {
			continue
		}
		seen[r.Name] = true
		if inUse[r.Name] {
			delete(w.unused, r.Name)
			continue
		}
		since, ok := w.unused[r.Name]
		if !ok {
			w.unused[r.Name] = now
			continue
		}
		if now.Sub(since) >= w.grace {
			out = append(out, r.Name)
			delete(w.unused, r.Name)
		}
	}
	for n := range w.unused {
		if !seen[n] {
			delete(w.unused, n)
		}
	}
	return out
}

// Sweep removes the records of lockspaces made on first use that have
// had no lock anywhere for the grace time (DefaultLockspaceGrace unless
// the server's config says otherwise). Only the coordinator (the lowest
// member) sweeps; a round in which a member cannot be asked removes
// nothing. The daemon calls it periodically with the time.
func (a *API) Sweep(ctx context.Context, now time.Time) (removed []string, err error) {
	s := a.s
	var coordinator bool
	if err := s.call(ctx, func() { coordinator = s.core.Coordinator() != nil }); err != nil || !coordinator {
		return nil, err
	}
	recs, err := s.cfg.Lockspaces.List(ctx)
	if err != nil {
		return nil, err
	}
	inUse := map[string]bool{}
	for _, r := range recs {
		if r.Explicit || r.Config.System {
			continue
		}
		n, err := a.countLocks(ctx, r.Name)
		if err != nil {
			return nil, err
		}
		inUse[r.Name] = n > 0
	}
	a.mu.Lock()
	if a.sweep == nil {
		grace := s.cfg.LockspaceGrace
		if grace <= 0 {
			grace = DefaultLockspaceGrace
		}
		a.sweep = newSweeper(grace)
	}
	gone := a.sweep.step(now, recs, inUse)
	a.mu.Unlock()
	for _, name := range gone {
		if err := s.cfg.Lockspaces.Delete(ctx, name); err != nil {
			return removed, err
		}
		a.forget(name)
		removed = append(removed, name)
	}
	return removed, nil
}
