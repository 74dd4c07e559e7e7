package lifecycle

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Watchdog feeds systemd's watchdog (WatchdogSec=) only while the daemon's
// work loop shows it is alive: the loop calls [Watchdog.Beat] each time it
// does (or checks for) work, and [Watchdog.Run] sends WATCHDOG=1 every
// interval/2 only if the last beat is younger than the interval. A stuck
// work loop therefore stops the pings and systemd kills and restarts the
// daemon, which a free-running timer would hide.
//
// A Watchdog whose interval is 0 (watchdog not enabled) does nothing. Beat is
// safe for concurrent use.
type Watchdog struct {
	interval time.Duration
	notify   NotifyFunc
	// Stalled, when set before Run, is called (from Run's goroutine) each
	// time a ping is withheld, with the age of the last beat, e.g. to log
	// why systemd is about to kill the daemon.
	Stalled func(age time.Duration)

	now  func() time.Time                                 // time source
	tick func(d time.Duration) (<-chan time.Time, func()) // ticker source
	base time.Time                                        // beats are offsets from base (monotonic)
	last atomic.Int64                                     // offset of the last beat, in ns
}

// NewWatchdog returns the watchdog systemd asked for through WATCHDOG_USEC
// (and WATCHDOG_PID), pinging through n; its interval is 0 when there is
// none.
func NewWatchdog(n *Notifier) (*Watchdog, error) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return nil, fmt.Errorf("lifecycle: watchdog: %w", err)
	}
	return NewWatchdogInterval(interval, n), nil
}

// NewWatchdogInterval returns a watchdog with the given interval (the time
// after which the service manager gives up on the daemon; 0 disables it)
// pinging through n. The grace before the first Beat is one interval.
func NewWatchdogInterval(interval time.Duration, n *Notifier) *Watchdog {
	w := &Watchdog{interval: interval, notify: n.notify, now: time.Now, tick: newTicker}
	w.base = w.now()
	return w
}

func newTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// Enabled reports whether the service manager expects pings.
func (w *Watchdog) Enabled() bool { return w.interval > 0 }

// Interval returns the watchdog interval, 0 when disabled.
func (w *Watchdog) Interval() time.Duration { return w.interval }

// Beat records that the work loop is alive now.
func (w *Watchdog) Beat() { w.last.Store(int64(w.now().Sub(w.base))) }

// Run pings the watchdog every interval/2 while the work loop is healthy,
// until ctx is done. With the watchdog disabled it just waits for ctx.
// Errors sending a ping are ignored: systemd then kills the daemon, which is
// the point.
func (w *Watchdog) Run(ctx context.Context) {
	if !w.Enabled() {
		<-ctx.Done()
		return
	}
	c, stop := w.tick(w.interval / 2)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c:
			w.check()
		}
	}
}

// check sends WATCHDOG=1 when the last beat is recent enough and reports
// whether it did.
func (w *Watchdog) check() bool {
	age := w.now().Sub(w.base) - time.Duration(w.last.Load())
	if !healthy(age, w.interval) {
		if w.Stalled != nil {
			w.Stalled(age)
		}
		return false
	}
	_, _ = w.notify(daemon.SdNotifyWatchdog)
	return true
}

// healthy is the gating decision: ping only when the last beat, age old, is
// younger than the watchdog interval. A negative age cannot happen with a
// monotonic clock; it is treated as fresh.
func healthy(age, interval time.Duration) bool {
	return age < interval
}
