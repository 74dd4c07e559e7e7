package lifecycle

import (
	"fmt"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// NotifyFunc sends one sd_notify(3) message such as "READY=1". It returns
// whether the message was sent: false with a nil error means there is no
// service manager to tell (NOTIFY_SOCKET unset), as daemon.SdNotify does.
type NotifyFunc func(state string) (sent bool, err error)

// SdNotify is the NotifyFunc that talks to systemd through NOTIFY_SOCKET.
func SdNotify(state string) (bool, error) { return daemon.SdNotify(false, state) }

// Notifier tells the service manager about the daemon's state. Its methods
// are safe for concurrent use and are no-ops without error when
// NOTIFY_SOCKET is unset.
type Notifier struct {
	notify NotifyFunc
	// monotonic returns CLOCK_MONOTONIC in microseconds (for RELOADING=1).
	monotonic func() int64
}

// NewNotifier returns a Notifier that talks to systemd ([SdNotify]).
func NewNotifier() *Notifier { return NewNotifierFunc(SdNotify) }

// NewNotifierFunc returns a Notifier that sends through fn, e.g. a fake that
// records the messages in a test.
func NewNotifierFunc(fn NotifyFunc) *Notifier {
	return &Notifier{notify: fn, monotonic: monotonicUsec}
}

func (n *Notifier) send(state string) error {
	if _, err := n.notify(state); err != nil {
		name, _, _ := strings.Cut(state, "=")
		return fmt.Errorf("lifecycle: notify %s: %w", name, err)
	}
	return nil
}

// Ready sends READY=1: start-up (or a reload) is complete and the daemon
// serves requests. Send it only once the daemon can really serve.
func (n *Notifier) Ready() error { return n.send(daemon.SdNotifyReady) }

// Status sends STATUS=<text>, the one-line status systemctl status shows.
// Newlines in the text become spaces.
func (n *Notifier) Status(format string, args ...any) error {
	text := strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(fmt.Sprintf(format, args...))
	return n.send("STATUS=" + text)
}

// Stopping sends STOPPING=1: the daemon has begun shutting down (send it on
// SIGTERM, before draining).
func (n *Notifier) Stopping() error { return n.send(daemon.SdNotifyStopping) }

// Reloading sends RELOADING=1 with MONOTONIC_USEC (as Type=notify-reload
// requires): the daemon is re-reading its configuration. Send [Notifier.Ready]
// when the reload is done.
func (n *Notifier) Reloading() error {
	return n.send(fmt.Sprintf("%s\nMONOTONIC_USEC=%d", daemon.SdNotifyReloading, n.monotonic()))
}

// monotonicUsec reads CLOCK_MONOTONIC in microseconds.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}
