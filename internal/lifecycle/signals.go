package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Signals turns the signals a daemon handles into channels: SIGTERM or
// SIGINT cancels the returned context; SIGHUP sends on reload (buffered,
// coalescing: signals arriving while one is pending are merged).
//
// After the first SIGTERM or SIGINT the process no longer catches them, so
// a second one ends it at once (the default action) — a stuck drain can be
// cut short by hand. Call stop when done, typically deferred in main: it
// cancels the context, waits for the goroutine that watches the signals
// and stops delivering SIGHUP.
func Signals(ctx context.Context) (ctx2 context.Context, stop context.CancelFunc, reload <-chan struct{}) {
	ctx2, cancel := context.WithCancel(ctx)
	term := make(chan os.Signal, 1)
	hup := make(chan os.Signal, 1)
	rl := make(chan struct{}, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(term)
		for {
			select {
			case <-term:
				cancel()
				return
			case <-hup:
				select {
				case rl <- struct{}{}:
				default:
				}
			case <-ctx2.Done():
				return
			}
		}
	}()
	// Once the loop has returned SIGHUP stays caught (into the full or
	// unread buffer of hup) until stop, so a late reload request during the
	// drain does not kill the daemon.
	stop = func() {
		cancel()
		<-done
		signal.Stop(hup)
	}
	return ctx2, stop, rl
}

// ErrDrainTimeout is matched (errors.Is) by the error of [Drain] when the
// shutdown function did not finish in time.
var ErrDrainTimeout = errors.New("lifecycle: drain timed out")

// Drain runs shutdown with a context that expires after timeout and waits
// for it to return, at most until that deadline. It returns shutdown's error,
// or an error wrapping [ErrDrainTimeout] when the deadline passed first; in
// that case shutdown keeps running in its goroutine and the caller is
// expected to exit anyway. Use it on SIGTERM, after [Notifier.Stopping],
// with a timeout below systemd's TimeoutStopSec so the daemon exits on its
// own before SIGKILL.
func Drain(timeout time.Duration, shutdown func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- shutdown(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w after %v", ErrDrainTimeout, timeout)
	}
}
