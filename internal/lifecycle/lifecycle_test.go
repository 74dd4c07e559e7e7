package lifecycle

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// recorder is a fake NotifyFunc that records the messages.
type recorder struct {
	mu   sync.Mutex
	msgs []string
	err  error
}

func (r *recorder) notify(state string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return false, r.err
	}
	r.msgs = append(r.msgs, state)
	return true, nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

func TestNotifier(t *testing.T) {
	r := &recorder{}
	n := NewNotifierFunc(r.notify)
	n.monotonic = func() int64 { return 42 }
	for _, err := range []error{
		n.Ready(),
		n.Status("serving %d nodes", 3),
		n.Status("two\nlines\r\nhere"),
		n.Reloading(),
		n.Stopping(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"READY=1",
		"STATUS=serving 3 nodes",
		"STATUS=two lines here",
		"RELOADING=1\nMONOTONIC_USEC=42",
		"STOPPING=1",
	}
	if got := r.got(); !reflect.DeepEqual(got, want) {
		t.Errorf("messages %q, want %q", got, want)
	}
}

func TestNotifierError(t *testing.T) {
	boom := errors.New("boom")
	n := NewNotifierFunc((&recorder{err: boom}).notify)
	err := n.Ready()
	if !errors.Is(err, boom) || err.Error() != "lifecycle: notify READY: boom" {
		t.Errorf("Ready() = %v", err)
	}
}

// TestNotifierWithoutSystemd: no NOTIFY_SOCKET, no error.
func TestNotifierWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := NewNotifier()
	if err := n.Ready(); err != nil {
		t.Errorf("Ready() = %v", err)
	}
	if err := n.Reloading(); err != nil {
		t.Errorf("Reloading() = %v", err)
	}
}

// TestNotifierSocket sends through a real notify socket, as systemd sees it.
func TestNotifierSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	if err := NewNotifier().Status("up"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 128)
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	k, err := conn.Read(buf)
	if err != nil || string(buf[:k]) != "STATUS=up" {
		t.Errorf("read %q, %v", buf[:k], err)
	}
	if m := monotonicUsec(); m <= 0 {
		t.Errorf("monotonicUsec() = %d", m)
	}
}

func TestHealthy(t *testing.T) {
	const iv = 10 * time.Second
	tests := []struct {
		age  time.Duration
		want bool
	}{
		{0, true},
		{-time.Second, true},
		{iv / 2, true},
		{iv - time.Nanosecond, true},
		{iv, false},
		{iv + time.Second, false},
	}
	for _, tt := range tests {
		if got := healthy(tt.age, iv); got != tt.want {
			t.Errorf("healthy(%v, %v) = %v, want %v", tt.age, iv, got, tt.want)
		}
	}
}

// fakeClock is a settable time source.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestWatchdog(interval time.Duration) (*Watchdog, *recorder, *fakeClock, chan time.Time) {
	r := &recorder{}
	clk := &fakeClock{t: time.Unix(1000, 0)}
	ticks := make(chan time.Time)
	w := NewWatchdogInterval(interval, NewNotifierFunc(r.notify))
	w.now = clk.now
	w.base = clk.now()
	w.tick = func(d time.Duration) (<-chan time.Time, func()) {
		if d != interval/2 {
			panic("tick period is not interval/2")
		}
		return ticks, func() {}
	}
	return w, r, clk, ticks
}

// TestWatchdogGating drives the decision with a fake clock: pings only
// while beats are recent.
func TestWatchdogGating(t *testing.T) {
	const iv = 10 * time.Second
	w, r, clk, _ := newTestWatchdog(iv)
	var stalls []time.Duration
	w.Stalled = func(age time.Duration) { stalls = append(stalls, age) }

	steps := []struct {
		advance time.Duration
		beat    bool
		ping    bool
	}{
		{0, false, true},                // grace: created now
		{5 * time.Second, false, true},  // 5s since creation
		{5 * time.Second, false, false}, // 10s: no beat within the interval
		{0, true, true},                 // the loop beats again
		{9 * time.Second, false, true},
		{2 * time.Second, false, false}, // 11s since the beat: stuck
		{time.Hour, true, true},
	}
	for i, s := range steps {
		clk.advance(s.advance)
		if s.beat {
			w.Beat()
		}
		if got := w.check(); got != s.ping {
			t.Fatalf("step %d: ping = %v, want %v", i, got, s.ping)
		}
	}
	if got := len(r.got()); got != 5 {
		t.Errorf("%d pings sent, want 5", got)
	}
	for _, m := range r.got() {
		if m != "WATCHDOG=1" {
			t.Errorf("sent %q", m)
		}
	}
	if want := []time.Duration{10 * time.Second, 11 * time.Second}; !reflect.DeepEqual(stalls, want) {
		t.Errorf("Stalled ages %v, want %v", stalls, want)
	}
}

// TestWatchdogRun drives Run with a fake ticker; each tick ends in either a
// ping or a Stalled call, reported on results.
func TestWatchdogRun(t *testing.T) {
	const iv = 4 * time.Second
	w, _, clk, ticks := newTestWatchdog(iv)
	results := make(chan bool)
	w.notify = func(string) (bool, error) { results <- true; return true, nil }
	w.Stalled = func(time.Duration) { results <- false }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()

	tick := func(want bool) {
		t.Helper()
		ticks <- time.Time{}
		if got := <-results; got != want {
			t.Fatalf("ping = %v, want %v", got, want)
		}
	}
	tick(true) // within the grace interval
	clk.advance(iv)
	tick(false) // no beat for an interval
	w.Beat()
	tick(true)
	cancel()
	<-done
}

func TestWatchdogDisabled(t *testing.T) {
	w := NewWatchdogInterval(0, NewNotifierFunc((&recorder{}).notify))
	if w.Enabled() || w.Interval() != 0 {
		t.Fatal("interval 0 is enabled")
	}
	w.Beat()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w.Run(ctx) // returns at once
}

func TestNewWatchdogFromEnv(t *testing.T) {
	n := NewNotifierFunc((&recorder{}).notify)
	tests := []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, false},
		{"2000000", "", 2 * time.Second, false},
		{"2000000", "1", 0, false}, // another process is watched
		{"2000000", strconv.Itoa(os.Getpid()), 2 * time.Second, false},
		{"x", "", 0, true},
	}
	for _, tt := range tests {
		t.Setenv("WATCHDOG_USEC", tt.usec)
		t.Setenv("WATCHDOG_PID", tt.pid)
		w, err := NewWatchdog(n)
		if tt.err {
			if err == nil {
				t.Errorf("WATCHDOG_USEC=%q: no error", tt.usec)
			}
			continue
		}
		if err != nil || w.Interval() != tt.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, %v; want %v", tt.usec, tt.pid, w, err, tt.want)
		}
	}
}

// TestNewTicker checks the real ticker source is wired.
func TestNewTicker(t *testing.T) {
	c, stop := newTicker(time.Millisecond)
	<-c
	stop()
}

func TestSignals(t *testing.T) {
	ctx, stop, reload := Signals(context.Background())
	defer stop()

	// SIGHUP: a reload, coalesced when one is pending.
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reload:
	case <-time.After(10 * time.Second):
		t.Fatal("no reload after SIGHUP")
	}
	if ctx.Err() != nil {
		t.Fatal("SIGHUP cancelled the context")
	}

	// SIGTERM: cancellation.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not cancel the context")
	}
}

func TestSignalsInterrupt(t *testing.T) {
	ctx, stop, _ := Signals(context.Background())
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGINT did not cancel the context")
	}
}

func TestSignalsStop(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	ctx, stop, _ := Signals(parent)
	cancel()
	<-ctx.Done()
	stop()
	ctx, stop, _ = Signals(context.Background())
	stop()
	<-ctx.Done()
}

func TestDrain(t *testing.T) {
	// Finishes in time: its error is returned.
	boom := errors.New("boom")
	if err := Drain(time.Minute, func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("drain context has no deadline")
		}
		return boom
	}); err != boom {
		t.Errorf("Drain = %v, want boom", err)
	}
	if err := Drain(time.Minute, func(context.Context) error { return nil }); err != nil {
		t.Errorf("Drain = %v", err)
	}

	// Does not finish: ErrDrainTimeout, even if the function ignores ctx.
	release := make(chan struct{})
	defer close(release)
	err := Drain(time.Millisecond, func(context.Context) error { <-release; return nil })
	if !errors.Is(err, ErrDrainTimeout) || err.Error() != "lifecycle: drain timed out after 1ms" {
		t.Errorf("Drain = %v, want ErrDrainTimeout", err)
	}
}
