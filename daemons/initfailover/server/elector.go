package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/daemons/initfailover/election"
	"github.com/openssi/openssi/daemons/initfailover/initfailoverspec"
)

// ElectorConfig configures an Elector.
type ElectorConfig struct {
	// Self is this node's number.
	Self uint32
	// Target is the init target; Services the other units of the init
	// node.
	Target   string
	Services []string
	// StopTimeout: initfailover.stop_timeout.
	StopTimeout time.Duration
	// Lockspace and Resource name the lock of the role. Default the init
	// lock (initfailoverspec.Lockspace, Resource); openssi-keepalived
	// elects each application's node with a lock of its own.
	Lockspace, Resource string
	// Prefer is the placement rule of election.Config (nil: any node).
	Prefer func(up map[uint32]bool) uint32
	// Role names the role in the log ("init" by default; an
	// application's name for openssi-keepalived).
	Role string
	// Systemd carries unit jobs to the node's systemd.
	Systemd Units
	// Session opens a lock session with the node's dlmd.
	Session func(ctx context.Context) (*dlm.Client, error)
	// Retry is how long to wait before asking dlmd again after a refusal
	// or a failed connection. Default 1s.
	Retry time.Duration
	// Poll is how often a stop checks that the units are down. Default
	// 200ms.
	Poll time.Duration
	// DlmLease is the cluster's dlmd.lease: while it holds the lock the
	// Elector probes its dlmd session every tenth of it and treats the
	// lock as lost when no probe was answered for that long (a frozen
	// dlmd is fenced by its peers without telling its clients; see
	// election.LeaseExpired for the bound). It must not be longer than
	// the cluster's dlmd.lease. Default election.DefaultDlmLease (dlmd's
	// default).
	DlmLease time.Duration
	Log      logrus.FieldLogger
}

// Elector is the shell around election.Core: one loop goroutine steps the
// core and carries its actions out with dlmd (the init lock) and systemd
// (the units), each slow call in a goroutine of its own that reports back
// to the loop.
type Elector struct {
	cfg    ElectorConfig
	log    logrus.FieldLogger
	core   *election.Core
	events chan func(now time.Time)

	// Owned by the loop.
	sess    *dlm.Client
	lock    *dlm.Lock
	lockGen int
	stopGen int
	work    context.Context
	// cancelStart ends the start jobs under way.
	cancelStart context.CancelFunc
	// lastAnswer: while lock is held, the send time of the last probe
	// its dlmd session answered (at first, the grant); cancelProbe ends
	// the probes of the lock held.
	lastAnswer  time.Time
	cancelProbe context.CancelFunc

	wake chan struct{}

	mu        sync.Mutex
	pendingUp map[uint32]bool
	// opened are the sessions still open, closed when Run ends.
	opened []*dlm.Client
	state  election.State
	since  time.Time
	isInit bool
	// wg joins the goroutines of lock requests, watches and unit jobs.
	wg sync.WaitGroup
}

// NewElector returns an Elector; Run runs it.
func NewElector(cfg ElectorConfig) *Elector {
	if cfg.Retry == 0 {
		cfg.Retry = time.Second
	}
	if cfg.Poll == 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.DlmLease == 0 {
		cfg.DlmLease = election.DefaultDlmLease
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	if cfg.Role == "" {
		cfg.Role = "init"
	}
	if cfg.Lockspace == "" {
		cfg.Lockspace, cfg.Resource = initfailoverspec.Lockspace, initfailoverspec.Resource
	}
	return &Elector{cfg: cfg, log: cfg.Log, events: make(chan func(time.Time), 64), wake: make(chan struct{}, 1), pendingUp: map[uint32]bool{},
		core: election.New(election.Config{Self: cfg.Self, StopTimeout: cfg.StopTimeout, Nonce: bootNonce(), Prefer: cfg.Prefer})}
}

// Status returns this node's state in the election, since when, and
// whether it holds the init role.
func (e *Elector) Status() (election.State, time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state, e.since, e.isInit
}

// post hands f to the loop; false when the loop has ended.
func (e *Elector) post(ctx context.Context, f func(time.Time)) bool {
	select {
	case e.events <- f:
		return true
	case <-ctx.Done():
		return false
	}
}

// SetUp tells the core whether node is an UP member. It never blocks:
// the loop takes the change on its next turn.
func (e *Elector) SetUp(node uint32, up bool) {
	e.mu.Lock()
	e.pendingUp[node] = up
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// takeUp hands the membership changes to the core.
func (e *Elector) takeUp() {
	e.mu.Lock()
	p := e.pendingUp
	e.pendingUp = map[uint32]bool{}
	e.mu.Unlock()
	for n, up := range p {
		e.core.SetUp(n, up)
	}
}

// Move hands the init role to target; it fails unless this node is the
// running init (election.ErrNotInit) or target is UP.
func (e *Elector) Move(ctx context.Context, target uint32) error {
	errc := make(chan error, 1)
	if !e.post(ctx, func(now time.Time) { errc <- e.core.Move(now, target) }) {
		return ctx.Err()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run runs the election until ctx ends, then shuts it down: the services
// stopped if this node runs them, the lock released so the next init
// starts at once (bounded by the stop timeout and a margin). beat is
// called on every turn of the loop (the watchdog).
func (e *Elector) Run(ctx context.Context, beat func()) error {
	work, cancel := context.WithCancel(context.Background())
	e.work = work
	defer func() {
		cancel()
		e.wg.Wait()
		e.mu.Lock()
		opened := e.opened
		e.opened = nil
		e.mu.Unlock()
		for _, s := range opened {
			s.Close()
		}
	}()
	e.takeUp()
	e.warnUnbound()
	e.core.Start(time.Now())
	e.apply()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var drain <-chan time.Time
	done := ctx.Done()
	for {
		if beat != nil {
			beat()
		}
		if st, _ := e.core.State(); st == election.Done {
			return nil
		}
		wait := time.Second
		if d := e.core.Deadline(); !d.IsZero() {
			wait = min(wait, max(time.Until(d), 0))
		}
		if e.lock != nil {
			wait = min(wait, max(time.Until(election.LeaseEnd(e.lastAnswer, e.cfg.DlmLease)), 0))
		}
		timer.Reset(wait)
		select {
		case f := <-e.events:
			f(time.Now())
		case <-e.wake:
			e.takeUp()
		case <-timer.C:
			e.core.Tick(time.Now())
		case <-done:
			done = nil
			e.log.Infof("stopping: the %s role is released once its services are stopped", e.cfg.Role)
			e.core.Shutdown(time.Now())
			drain = time.After(e.cfg.StopTimeout + 5*time.Second)
		case <-drain:
			return fmt.Errorf("initfailover: the services did not stop in time; the %s lock is dropped with the session", e.cfg.Role)
		}
		e.checkLease(time.Now())
		e.apply()
	}
}

// warnUnbound warns, once at start, of each init unit that systemd
// would not stop if initfailover died (not PartOf the target).
func (e *Elector) warnUnbound() {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ctx, cancel := context.WithTimeout(e.work, 10*time.Second)
		defer cancel()
		units, err := Unbound(ctx, e.cfg.Systemd, e.cfg.Target, e.cfg.Services)
		if err != nil {
			e.log.WithError(err).Debug("checking that the init units are PartOf the init target")
		}
		for _, u := range units {
			e.log.WithField("unit", u).Warnf("%s is not PartOf=%s: if initfailover dies it runs on here until initfailover restarts, "+
				"while another node may start it; give it PartOf=%s (a drop-in will do)", u, e.cfg.Target, e.cfg.Target)
		}
	}()
}

// apply carries out the core's actions and publishes its state.
func (e *Elector) apply() {
	for _, a := range e.core.Ready() {
		e.log.WithField("action", a.String()).Debug("election")
		switch a.Kind {
		case election.RequestLock:
			e.requestLock()
		case election.ReleaseLock:
			e.releaseLock(a)
		case election.StartUnits:
			e.log.Infof("this node is the %s node: starting its services", e.cfg.Role)
			e.stopGen++ // a stop still under way no longer counts
			e.startUnits()
		case election.StopUnits:
			e.stopGen++
			if e.cancelStart != nil {
				// No start job is begun once a stop is: a start
				// after the stop would outlive it.
				e.cancelStart()
				e.cancelStart = nil
			}
			e.stopUnits(e.stopGen, false)
		case election.KillUnits:
			e.log.Warnf("the %s services did not stop in time: killing them", e.cfg.Role)
			e.stopUnits(e.stopGen, true)
		}
	}
	st, since := e.core.State()
	e.mu.Lock()
	if e.state != st {
		e.log.WithField("state", st.String()).Info("election state")
	}
	e.state, e.since, e.isInit = st, since, e.core.IsInit()
	e.mu.Unlock()
}

// requestLock queues for the init lock on the session (a new one if it
// ended), in a goroutine that reports the grant or the loss.
func (e *Elector) requestLock() {
	e.lockGen++
	gen := e.lockGen
	sess := e.sess
	e.dropLock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		failures := 0
		for e.work.Err() == nil {
			if sess == nil || sess.Err() != nil {
				if sess != nil {
					e.closeSession(sess)
				}
				s, err := e.cfg.Session(e.work)
				if err != nil {
					// Once, then every minute or so: dlmd may take a
					// while to come up.
					if failures%60 == 0 {
						e.log.WithError(err).Warn("no lock session with dlmd: retrying")
					}
					failures++
					sleep(e.work, e.cfg.Retry)
					continue
				}
				sess = s
				e.mu.Lock()
				e.opened = append(e.opened, s)
				e.mu.Unlock()
				e.post(e.work, func(time.Time) { e.sess = sess })
			}
			l, err := sess.Lock(e.work, e.cfg.Lockspace, e.cfg.Resource, dlm.EX, dlm.ValueBlock())
			if err == nil {
				v, valid, _ := l.Value()
				e.post(e.work, func(now time.Time) {
					if gen != e.lockGen {
						_ = l.Unlock(e.work) // stale: give it back
						return
					}
					e.lock = l
					e.watch(gen, sess)
					e.probe(now, gen, sess)
					e.core.Granted(now, [election.RecordLen]byte(v), valid)
				})
				return
			}
			if sess.Err() != nil {
				e.post(e.work, func(now time.Time) {
					if gen == e.lockGen {
						e.core.Lost(now)
					}
				})
				return
			}
			if e.work.Err() == nil {
				e.log.WithError(err).Warnf("%s lock refused: asking again", e.cfg.Role)
				sleep(e.work, e.cfg.Retry)
			}
		}
	}()
}

// closeSession closes a session that ended.
func (e *Elector) closeSession(s *dlm.Client) {
	e.mu.Lock()
	e.opened = slices.DeleteFunc(e.opened, func(o *dlm.Client) bool { return o == s })
	e.mu.Unlock()
	s.Close()
}

// watch reports the loss of the granted lock of gen when its session
// ends.
func (e *Elector) watch(gen int, sess *dlm.Client) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		select {
		case <-sess.Done():
		case <-e.work.Done():
			return
		}
		e.post(e.work, func(now time.Time) {
			if gen == e.lockGen && e.lock != nil {
				e.log.WithError(sess.Err()).Warnf("the %s lock is lost", e.cfg.Role)
				e.dropLock()
				e.core.Lost(now)
			}
		})
	}()
}

// dropLock forgets the held lock and ends its probes.
func (e *Elector) dropLock() {
	e.lock = nil
	if e.cancelProbe != nil {
		e.cancelProbe()
		e.cancelProbe = nil
	}
}

// probe starts probing sess, whose lock of gen was granted at now: a
// probe every election.ProbeEvery, each waiting for its answer on its
// own (so that a slow answer delays no later probe: a dlmd answering
// within a lease less a probe period keeps the lock); each answer moves
// lastAnswer to the probe's send time (dlmd's loop ran after it), until
// the lock is dropped.
func (e *Elector) probe(now time.Time, gen int, sess *dlm.Client) {
	e.lastAnswer = now
	ctx, cancel := context.WithCancel(e.work)
	e.cancelProbe = cancel
	every := election.ProbeEvery(e.cfg.DlmLease)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for ctx.Err() == nil && sess.Err() == nil {
			sent := time.Now()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				pctx, pcancel := context.WithTimeout(ctx, e.cfg.DlmLease)
				defer pcancel()
				if sess.Ping(pctx) != nil {
					return
				}
				e.post(ctx, func(time.Time) {
					if gen == e.lockGen && e.lock != nil && sent.After(e.lastAnswer) {
						e.lastAnswer = sent
					}
				})
			}()
			sleep(ctx, every)
		}
	}()
}

// checkLease treats the held lock as lost once its dlmd session has not
// answered a probe for the lease (election.LeaseExpired): its dlmd may be
// frozen, fenced by its peers without telling this node. The session is
// given up (closed, so that a dlmd that wakes releases what it held) and
// the role is taken again only through a new session's grant.
func (e *Elector) checkLease(now time.Time) {
	if e.lock == nil || !election.LeaseExpired(e.lastAnswer, now, e.cfg.DlmLease) {
		return
	}
	e.log.Warnf("dlmd has not answered for %v: the %s lock is treated as lost (dlmd may be frozen and fenced by its peers)",
		now.Sub(e.lastAnswer).Round(time.Millisecond), e.cfg.Role)
	e.dropLock()
	e.lockGen++ // the old session's end no longer matters
	if s := e.sess; s != nil {
		e.sess = nil
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.closeSession(s) // may wait for a frozen dlmd: not in the loop
		}()
	}
	e.core.Lost(now)
}

// releaseLock unlocks the held lock with the action's value block.
func (e *Elector) releaseLock(a election.Action) {
	l := e.lock
	e.dropLock()
	e.lockGen++ // the session's end no longer matters to this grant
	if l == nil {
		return
	}
	opt := dlm.InvalidateValue()
	if a.Valid {
		opt = dlm.WriteValue(dlm.Value(a.Value))
	}
	if err := l.Unlock(e.work, opt); err != nil {
		e.log.WithError(err).Warnf("releasing the %s lock", e.cfg.Role)
	}
}

// units returns the init node's units: the target, what it wants, the
// listed services.
func (e *Elector) units(ctx context.Context) []string {
	out := []string{e.cfg.Target}
	wants, err := e.cfg.Systemd.Wants(ctx, e.cfg.Target)
	if err != nil {
		e.log.WithError(err).Warn("listing what the init target wants")
	}
	for _, u := range append(wants, e.cfg.Services...) {
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// startUnits starts the target and the listed services, one after the
// other, until a stop begins.
func (e *Elector) startUnits() {
	ctx, cancel := context.WithCancel(e.work)
	e.cancelStart = cancel
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for _, u := range append([]string{e.cfg.Target}, e.cfg.Services...) {
			if ctx.Err() != nil {
				return
			}
			if err := e.cfg.Systemd.Start(ctx, u); err != nil && ctx.Err() == nil {
				e.log.WithError(err).Warn("starting an init service")
			}
		}
	}()
}

// stopUnits stops (or kills) the init units and reports, for stop gen,
// once none of them runs.
func (e *Elector) stopUnits(gen int, kill bool) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		units := e.units(e.work)
		var wg sync.WaitGroup
		for _, u := range units {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if kill {
					err = e.cfg.Systemd.Kill(e.work, u, syscall.SIGKILL)
				} else {
					err = e.cfg.Systemd.Stop(e.work, u)
				}
				if err != nil && !errors.Is(err, ErrNoUnit) {
					e.log.WithError(err).Warn("stopping an init service")
				}
			}()
		}
		wg.Wait()
		for e.work.Err() == nil && !e.allDown(units) {
			sleep(e.work, e.cfg.Poll)
		}
		e.post(e.work, func(now time.Time) {
			if gen == e.stopGen {
				e.core.UnitsStopped(now)
			}
		})
	}()
}

// allDown reports whether none of units is active or changing state.
func (e *Elector) allDown(units []string) bool {
	for _, u := range units {
		s, err := e.cfg.Systemd.Status(e.work, u)
		if errors.Is(err, ErrNoUnit) {
			continue
		}
		if err != nil || (s.ActiveState != "inactive" && s.ActiveState != "failed") {
			return false
		}
	}
	return true
}

// bootNonce draws the random nonce of this start's move ids.
func bootNonce() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return binary.BigEndian.Uint64(b[:])
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
