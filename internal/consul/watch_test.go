package consul

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

var errBoom = errors.New("boom")

func TestBackoff(t *testing.T) {
	lo, hi := 50*time.Millisecond, 5*time.Second
	for _, tc := range []struct {
		n      int
		jitter float64
		want   time.Duration
	}{
		{1, 0, 25 * time.Millisecond},
		{1, 0.5, 37500 * time.Microsecond},
		{1, 0.999999, 49999975 * time.Nanosecond},
		{2, 0, 50 * time.Millisecond},
		{3, 0, 100 * time.Millisecond},
		{7, 0, 1600 * time.Millisecond},
		{8, 0, 2500 * time.Millisecond}, // 6.4s capped at 5s, halved
		{8, 0.5, 3750 * time.Millisecond},
		{1000, 0, 2500 * time.Millisecond}, // no overflow
		{3, -1, 100 * time.Millisecond},    // bad jitter ignored
		{3, 1, 100 * time.Millisecond},
	} {
		if got := backoff(tc.n, lo, hi, tc.jitter); got != tc.want {
			t.Errorf("backoff(%d, jitter %v) = %v, want %v", tc.n, tc.jitter, got, tc.want)
		}
	}
}

func TestNextStep(t *testing.T) {
	o := WatchOptions{}.withDefaults() // 50ms..5s, MinInterval 50ms
	ms := time.Millisecond
	for _, tc := range []struct {
		name      string
		in        watchState
		got       uint64
		err       error
		elapsed   time.Duration
		want      watchState
		wantDelay time.Duration
	}{
		{"first read moves index", watchState{0, 0}, 10, nil, ms, watchState{10, 0}, 0},
		{"index moved", watchState{10, 0}, 12, nil, 30 * time.Second, watchState{12, 0}, 0},
		{"timeout, same index: no extra wait", watchState{10, 0}, 10, nil, 5 * time.Minute, watchState{10, 0}, 0},
		{"same index returned at once: rate-limited, no spin", watchState{10, 0}, 10, nil, 0, watchState{10, 0}, 50 * ms},
		{"same index after 20ms", watchState{10, 0}, 10, nil, 20 * ms, watchState{10, 0}, 30 * ms},
		{"index went backwards: reset to 0", watchState{10, 0}, 7, nil, ms, watchState{0, 0}, 49 * ms},
		{"index 0 from server: use 1", watchState{0, 0}, 0, nil, ms, watchState{1, 0}, 49 * ms},
		{"index 0 after a real one: reset to 0 then 1", watchState{5, 0}, 0, nil, 60 * ms, watchState{0, 0}, 0},
		{"first error keeps index", watchState{10, 0}, 0, errBoom, ms, watchState{10, 1}, 25 * ms},
		{"third error", watchState{10, 2}, 0, errBoom, ms, watchState{10, 3}, 100 * ms},
		{"many errors capped", watchState{10, 40}, 0, errBoom, ms, watchState{10, 41}, 2500 * ms},
		{"success clears failures", watchState{10, 5}, 11, nil, ms, watchState{11, 0}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, delay := nextStep(tc.in, callResult{got: tc.got, err: tc.err, elapsed: tc.elapsed}, o, 0)
			if got != tc.want || delay != tc.wantDelay {
				t.Errorf("nextStep(%+v, got %d, err %v, elapsed %v) = %+v, %v; want %+v, %v",
					tc.in, tc.got, tc.err, tc.elapsed, got, delay, tc.want, tc.wantDelay)
			}
		})
	}
}

func TestNextStepInterrupted(t *testing.T) {
	o := WatchOptions{}.withDefaults()
	for _, in := range []watchState{{10, 0}, {10, 3}, {0, 0}} {
		for _, r := range []callResult{
			{interrupted: true},
			{interrupted: true, got: 12},
			{interrupted: true, err: errBoom},
		} {
			got, delay := nextStep(in, r, o, 0.5)
			if got != (watchState{0, in.failures}) || delay != 0 {
				t.Errorf("nextStep(%+v, %+v) = %+v, %v; want a fresh read at once, failures kept", in, r, got, delay)
			}
		}
	}
}

// TestWatchLoop drives Watch with a scripted fn, a fake clock and a fake
// sleep: no real time passes.
func TestWatchLoop(t *testing.T) {
	type call struct {
		got uint64
		err error
		dur time.Duration // how long the fake call "blocks"
	}
	script := []call{
		{got: 5, dur: time.Millisecond},
		{got: 5, dur: 0},                // returned at once unchanged: 50ms pause
		{err: errBoom},                  // 25ms backoff (jitter 0)
		{err: errBoom},                  // 50ms
		{got: 9, dur: time.Millisecond}, // moved: no pause
		{got: 3, dur: time.Millisecond}, // backwards: reset, 49ms pause
		{got: 3, dur: time.Millisecond}, // fresh read from 0
	}
	want := []string{
		"call 0", "call 5", "sleep 50ms", "call 5", "sleep 25ms", "call 5", "sleep 50ms",
		"call 5", "call 9", "sleep 49ms", "call 0", "call 3",
	}

	var now time.Time
	var events []string
	var errs []error
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := WatchOptions{
		now: func() time.Time { return now },
		sleep: func(_ context.Context, d time.Duration, _ <-chan struct{}) (bool, error) {
			events = append(events, fmt.Sprint("sleep ", d))
			now = now.Add(d)
			return false, nil
		},
		rand:    func() float64 { return 0 },
		OnError: func(err error, _ time.Duration) { errs = append(errs, err) },
	}
	i := 0
	err := Watch(ctx, func(_ context.Context, wait uint64) (uint64, error) {
		events = append(events, fmt.Sprint("call ", wait))
		if i == len(script) {
			cancel()
			return wait, nil
		}
		c := script[i]
		i++
		now = now.Add(c.dur)
		return c.got, c.err
	}, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch returned %v, want context.Canceled", err)
	}
	if !slices.Equal(events, want) {
		t.Fatalf("events\n got %q\nwant %q", events, want)
	}
	if len(errs) != 2 {
		t.Fatalf("OnError saw %v, want 2 errors", errs)
	}
}

func TestWatchStopsOnCancelledSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	o := WatchOptions{
		sleep: func(context.Context, time.Duration, <-chan struct{}) (bool, error) {
			cancel()
			return false, context.Canceled
		},
		rand: func() float64 { return 0 },
	}
	calls := 0
	err := Watch(ctx, func(context.Context, uint64) (uint64, error) { calls++; return 0, errBoom }, o)
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("Watch = %v after %d calls, want Canceled after 1", err, calls)
	}
}

// TestWatchInterrupt interrupts a blocked call and a backoff pause: each
// is cut short and followed by a fresh read (index 0). The calls block on
// their context, as a blocking query does, so no real time passes.
func TestWatchInterrupt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	interrupt := make(chan struct{})
	var events []string
	step := 0
	o := WatchOptions{
		Interrupt: interrupt,
		sleep: func(ctx context.Context, d time.Duration, intr <-chan struct{}) (bool, error) {
			events = append(events, fmt.Sprint("sleep ", d))
			go func() { interrupt <- struct{}{} }()
			select {
			case <-intr:
				events = append(events, "sleep interrupted")
				return true, nil
			case <-ctx.Done():
				return false, ctx.Err()
			}
		},
		rand:    func() float64 { return 0 },
		OnError: func(err error, _ time.Duration) { events = append(events, "error "+err.Error()) },
	}
	err := Watch(ctx, func(callCtx context.Context, wait uint64) (uint64, error) {
		events = append(events, fmt.Sprint("call ", wait))
		step++
		switch step {
		case 1:
			return 7, nil
		case 2: // blocks until interrupted
			go func() { interrupt <- struct{}{} }()
			<-callCtx.Done()
			events = append(events, "call interrupted")
			return wait, callCtx.Err()
		case 3:
			return 0, errBoom // backoff, then the sleep is interrupted
		default:
			cancel()
			return wait, nil
		}
	}, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch returned %v, want context.Canceled", err)
	}
	want := []string{
		"call 0", "call 7", "call interrupted", "call 0", "error boom", "sleep 25ms", "sleep interrupted", "call 0",
	}
	if !slices.Equal(events, want) {
		t.Fatalf("events\n got %q\nwant %q", events, want)
	}
}
