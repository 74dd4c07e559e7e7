package server

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/daemons/initfailover/election"
	ifserver "github.com/openssi/openssi/daemons/initfailover/server"
	"github.com/openssi/openssi/daemons/keepalived/decl"
	"github.com/openssi/openssi/daemons/keepalived/placement"
)

// app is one monitored application on this node: its election (an
// initfailover Elector on the application's own lock, the same core and
// fencing as the init node's) and the unit it runs while this node holds
// the lock. app is the Elector's Systemd: the Elector starts, stops and
// kills the application through it, and between a start and a stop app
// watches it, restarts it in place, or gives it up and moves it.
type app struct {
	m    *Manager
	d    decl.Decl
	unit string
	log  logrus.FieldLogger
	el   *ifserver.Elector

	// life ends when the application is no longer run by this node's
	// daemon (removed, changed, shutdown).
	life context.Context

	mu      sync.Mutex
	gen     int
	cancel  context.CancelFunc
	watched chan struct{} // closed when the watch of gen ends
	retry   placement.Retry
	wg      sync.WaitGroup
}

var _ ifserver.Units = (*app)(nil)

func newApp(m *Manager, d decl.Decl, life context.Context) *app {
	return &app{m: m, d: d, unit: decl.Unit(d.Name), life: life, log: m.log.WithField("app", d.Name),
		retry: placement.Retry{Retries: d.Retries, Within: d.Within}}
}

// Start begins running the application: the Elector calls it when this
// node holds the application's lock and may start it.
func (a *app) Start(_ context.Context, unit string) error {
	if unit != a.unit {
		return fmt.Errorf("keepalived: %s is not %s", unit, a.unit)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.endWatchLocked()
	a.gen++
	ctx, cancel := context.WithCancel(a.life)
	a.cancel = cancel
	done := make(chan struct{})
	a.watched = done
	a.retry.Reset()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer close(done)
		a.watch(ctx)
	}()
	return nil
}

// endWatchLocked ends the watch under way, so that nothing restarts the
// application behind a stop. The caller holds a.mu.
func (a *app) endWatchLocked() {
	if a.cancel != nil {
		a.cancel()
		<-a.watched
		a.cancel = nil
	}
}

// Stop stops the application (the Elector: the lock is lost, moved, or
// the daemon stops).
func (a *app) Stop(ctx context.Context, unit string) error {
	a.mu.Lock()
	a.endWatchLocked()
	a.mu.Unlock()
	return noUnit(a.m.cfg.Units.Stop(ctx, unit))
}

// Kill kills what still runs of it.
func (a *app) Kill(ctx context.Context, unit string, sig syscall.Signal) error {
	a.mu.Lock()
	a.endWatchLocked()
	a.mu.Unlock()
	return noUnit(a.m.cfg.Units.Kill(ctx, unit, sig))
}

// Status says whether the unit still runs.
func (a *app) Status(ctx context.Context, unit string) (ifserver.UnitStatus, error) {
	s, err := a.m.cfg.Units.State(ctx, unit)
	if err != nil {
		return ifserver.UnitStatus{}, noUnit(err)
	}
	return ifserver.UnitStatus{ActiveState: s.Active, MainPID: s.MainPID}, nil
}

// Wants: an application is one unit.
func (a *app) Wants(context.Context, string) ([]string, error) { return nil, nil }

// noUnit maps ErrNoUnit to initfailover's, which the Elector knows.
func noUnit(err error) error {
	if errors.Is(err, ErrNoUnit) {
		return fmt.Errorf("%w: %w", ifserver.ErrNoUnit, err)
	}
	return err
}

// watch runs the application and keeps it running on this node until
// ctx ends: restarted in place after an exit or a failed check, given up
// after Retries failures within Within.
func (a *app) watch(ctx context.Context) {
	d := a.d
	var chk *decl.Check
	if d.Check != "" {
		c, err := decl.ParseCheck(d.Check)
		if err == nil {
			chk = &c
		}
	}
	// The node that gave it up last wrote its record before it let the
	// lock go: read it fresh, so that a node given up before is passed by.
	if slices.Contains(a.m.freshRun(ctx, d.Name), a.m.cfg.Self) {
		a.giveUp(ctx, "it kept failing on this node before (ssi keepalive move clears that)", false)
		return
	}
	restarts := 0
	for ctx.Err() == nil {
		u, argv, err := a.fit()
		if err != nil {
			// Not a crash: this node cannot run it at all.
			a.giveUp(ctx, err.Error(), true)
			return
		}
		start := time.Now()
		err = a.m.cfg.Units.Start(ctx, a.unit, Spec{Argv: argv, User: d.User, Description: "OpenSSI keepalive application " + d.Name,
			StopTimeout: election.KillAfter(a.m.cfg.StopTimeout), BindsTo: a.m.cfg.BindsTo})
		if ctx.Err() != nil {
			return
		}
		why := ""
		if err != nil {
			why = fmt.Sprintf("did not start: %v", err)
		} else {
			state := "running"
			if restarts > 0 {
				state = "restarted"
			}
			a.m.setRun(d.Name, func(r *RunRecord) {
				r.Node, r.State, r.Since, r.Restarts = a.m.cfg.Self, state, start, uint32(restarts)
				if restarts == 0 {
					r.Message = ""
				}
			})
			if restarts == 0 {
				a.log.WithField("command", d.Command).Info("started")
			}
			why = a.monitor(ctx, chk, u)
		}
		if ctx.Err() != nil {
			return
		}
		v := a.retry.Failed(time.Now())
		if v.GiveUp {
			a.giveUp(ctx, fmt.Sprintf("%s (%d failures within %v)", why, v.Count, d.Within), false)
			return
		}
		restarts++
		a.log.WithField("failures", v.Count).Warnf("%s: restarting it in place", why)
		a.m.setRun(d.Name, func(r *RunRecord) { r.State, r.Message = "restarting", why })
		sleep(ctx, v.After)
	}
}

// fit finds the application's user and program on this node.
func (a *app) fit() (*user.User, []string, error) {
	u, err := lookupUser(a.d.User)
	if err != nil {
		return nil, nil, err
	}
	argv, err := resolve(a.d.Command)
	if err != nil {
		return nil, nil, err
	}
	return u, argv, nil
}

// monitor watches the running unit until it exits, fails its check (it
// is then stopped) or ctx ends, and says why it ended.
func (a *app) monitor(ctx context.Context, chk *decl.Check, u *user.User) string {
	poll := time.NewTicker(a.m.cfg.Poll)
	defer poll.Stop()
	// Once it has run its window without a failure, the nodes that gave
	// it up may have it again.
	healthy := time.NewTimer(a.d.Within)
	defer healthy.Stop()
	var checks <-chan time.Time
	if chk != nil {
		t := time.NewTicker(a.d.CheckInterval)
		defer t.Stop()
		checks = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return ""
		case <-healthy.C:
			a.m.setRun(a.d.Name, func(r *RunRecord) { r.GaveUp = nil })
		case <-poll.C:
			s, err := a.m.cfg.Units.State(ctx, a.unit)
			if ctx.Err() != nil {
				return ""
			}
			if errors.Is(err, ErrNoUnit) || (err == nil && !s.Running()) {
				return "exited"
			}
		case <-checks:
			err := runCheck(ctx, a.m.cfg.Units, a.d.Name, *chk, u, min(a.d.CheckInterval, 10*time.Second))
			if ctx.Err() != nil {
				return ""
			}
			if err != nil {
				stopCtx, cancel := context.WithTimeout(ctx, a.m.cfg.StopTimeout)
				if serr := a.m.cfg.Units.Stop(stopCtx, a.unit); serr != nil && !errors.Is(serr, ErrNoUnit) && ctx.Err() == nil {
					_ = a.m.cfg.Units.Kill(ctx, a.unit, syscall.SIGKILL)
				}
				cancel()
				return fmt.Sprintf("failed its check: %v", err)
			}
		}
	}
}

// giveUp gives the application up on this node: it goes to the next
// node by its placement rule, or, when none can take it, stays stopped
// with one line saying why (never a crash loop).
func (a *app) giveUp(ctx context.Context, why string, unfit bool) {
	self := a.m.cfg.Self
	gaveUp := a.m.setRun(a.d.Name, func(r *RunRecord) {
		r.Node, r.State, r.Since, r.Message = self, "failed", time.Now(), why
		r.addGaveUp(self)
	})
	// Written before the lock goes: the next node reads it first.
	a.m.flushNow(ctx)
	next := a.m.choose(a.d, self, gaveUp)
	if next == 0 {
		a.log.Errorf("%s on node %d; no other node can take it: it stays stopped until `ssi keepalive move %s NODE` or a new declaration", why, self, a.d.Name)
		return
	}
	if unfit {
		a.log.Errorf("cannot run here: %s; moving it to node %d", why, next)
	} else {
		a.log.Warnf("%s on node %d: moving it to node %d", why, self, next)
	}
	// The move stops the application through Stop, which waits for this
	// watch to end: ask from outside it.
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.el.Move(a.life, next); err != nil && a.life.Err() == nil {
			a.log.WithError(err).Warnf("moving it to node %d", next)
		}
	}()
}

// wait joins the application's goroutines once its Elector has ended.
func (a *app) wait() {
	a.mu.Lock()
	a.endWatchLocked()
	a.mu.Unlock()
	a.wg.Wait()
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
