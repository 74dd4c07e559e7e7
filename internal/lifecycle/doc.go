// Package lifecycle makes every OpenSSI daemon behave the same under
// systemd (Type=notify, WatchdogSec=): it tells the service manager when the
// daemon is ready, reloading and stopping (sd_notify, through
// github.com/coreos/go-systemd/v22/daemon), feeds the watchdog only while the
// daemon's work loop is healthy, turns signals into context cancellation and
// bounds the drain on shutdown.
//
// Outside systemd (NOTIFY_SOCKET and WATCHDOG_USEC unset) everything is a
// silent no-op, so the same binary runs from a shell or a test.
//
// A daemon's main loop:
//
//	ctx, stop, reload := lifecycle.Signals(context.Background())
//	defer stop()
//	n := lifecycle.NewNotifier()
//	wd, err := lifecycle.NewWatchdog(n)
//	if err != nil {
//		return err
//	}
//	go wd.Run(ctx)
//	// ... start listening: READY=1 only once requests can be served
//	n.Ready()
//	for {
//		select {
//		case <-ctx.Done(): // SIGTERM or SIGINT
//			n.Stopping()
//			return lifecycle.Drain(10*time.Second, srv.Shutdown)
//		case <-reload: // SIGHUP
//			n.Reloading()
//			// re-read the configuration, apply the log level
//			n.Ready()
//		case ev := <-events:
//			handle(ev)
//			wd.Beat() // the work loop is alive
//		case <-ticker.C:
//			wd.Beat()
//		}
//	}
package lifecycle
