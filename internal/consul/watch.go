package consul

import (
	"context"
	"math/rand/v2"
	"time"
)

// Defaults of [WatchOptions].
const (
	DefaultMinBackoff  = 50 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
	DefaultMinInterval = 50 * time.Millisecond
)

// WatchOptions tune [Watch]. The zero value is usable.
type WatchOptions struct {
	// MinBackoff is the delay after the first failed call (default 50ms); it
	// doubles with each further consecutive failure, with jitter.
	MinBackoff time.Duration
	// MaxBackoff caps the delay between failed calls (default 5s).
	MaxBackoff time.Duration
	// MinInterval is the least time between the starts of two calls when the
	// index did not move (default 50ms), so that a query which stops blocking
	// cannot make the loop spin.
	MinInterval time.Duration
	// Interrupt, if set, wakes the loop for a local event the watched data
	// does not show (a gossip change, a leave): a value received on it
	// cancels the call in flight (its result is dropped) or cuts short the
	// pause between calls, and the next call is an immediate read (wait
	// index 0).
	Interrupt <-chan struct{}
	// OnError, if set, is called with every failed call's error and the
	// delay before the next attempt (for logging).
	OnError func(err error, retryIn time.Duration)

	// Seams for tests: nil means the real clock, timer and randomness.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration, interrupt <-chan struct{}) (interrupted bool, err error)
	rand  func() float64
}

func (o WatchOptions) withDefaults() WatchOptions {
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.MinInterval <= 0 {
		o.MinInterval = DefaultMinInterval
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.sleep == nil {
		o.sleep = sleepCtx
	}
	if o.rand == nil {
		o.rand = rand.Float64
	}
	return o
}

// sleepCtx waits d, or less when ctx ends (its error) or interrupt fires
// (interrupted).
func sleepCtx(ctx context.Context, d time.Duration, interrupt <-chan struct{}) (bool, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-interrupt:
		return true, nil
	case <-t.C:
		return false, nil
	}
}

// watchState is what the watch loop carries from one call to the next.
type watchState struct {
	index    uint64 // the index the next call waits on
	failures int    // consecutive failed calls
}

// callResult is what one call of the watch loop came to.
type callResult struct {
	got         uint64        // the index the call returned
	err         error         // its error
	elapsed     time.Duration // how long it took
	interrupted bool          // an interrupt cut it short (got and err are void)
}

// nextStep is the watch loop's whole policy, a pure function: given the state
// before a call and the call's result, it returns the state for the next call
// and how long to wait before making it. jitter is a random number in [0,1).
//
// It follows Consul's blocking-query rules: an index that goes backwards is
// reset to 0 (a fresh, non-blocking read); an index of 0 after a successful
// call is replaced by 1 so the next call blocks; errors back off
// exponentially with jitter and keep the old index; a call that returned
// without the index moving is rate-limited to one per MinInterval. An
// interrupted call is followed at once by a fresh read.
func nextStep(s watchState, r callResult, o WatchOptions, jitter float64) (watchState, time.Duration) {
	if r.interrupted {
		s.index = 0
		return s, 0
	}
	if r.err != nil {
		s.failures++
		return s, backoff(s.failures, o.MinBackoff, o.MaxBackoff, jitter)
	}
	s.failures = 0
	prev := s.index
	switch {
	case r.got < prev:
		s.index = 0
		return s, max(o.MinInterval-r.elapsed, 0)
	case r.got == 0:
		s.index = 1
		return s, max(o.MinInterval-r.elapsed, 0)
	case r.got == prev:
		return s, max(o.MinInterval-r.elapsed, 0)
	default:
		s.index = r.got
		return s, 0
	}
}

// backoff returns the delay after the n-th consecutive failure (n >= 1):
// min*2^(n-1) capped at max, then "equal jitter": a value in [d/2, d).
func backoff(n int, lo, hi time.Duration, jitter float64) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	if jitter < 0 || jitter >= 1 {
		jitter = 0
	}
	return d/2 + time.Duration(float64(d/2)*jitter)
}

// Watch runs fn in a loop until ctx ends, and then returns ctx.Err(). fn makes
// one blocking query waiting on waitIndex (0 for the first call: an
// immediate read) under the context it is given, handles its result, and
// returns the query's new index (X-Consul-Index) or an error. See [nextStep]
// for how the index and the delays are derived; fn never needs to sleep.
// Watch starts no goroutine that outlives a call.
func Watch(ctx context.Context, fn func(ctx context.Context, waitIndex uint64) (newIndex uint64, err error), opts WatchOptions) error {
	o := opts.withDefaults()
	var s watchState
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := o.now()
		r := call(ctx, fn, s.index, o.Interrupt)
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		r.elapsed = o.now().Sub(start)
		var delay time.Duration
		s, delay = nextStep(s, r, o, o.rand())
		if r.err != nil && !r.interrupted && o.OnError != nil {
			o.OnError(r.err, delay)
		}
		if delay > 0 {
			interrupted, err := o.sleep(ctx, delay, o.Interrupt)
			if err != nil {
				return err
			}
			if interrupted {
				s, _ = nextStep(s, callResult{interrupted: true}, o, 0)
			}
		}
	}
}

// call makes one call of fn, cancelling it when interrupt fires first.
func call(ctx context.Context, fn func(context.Context, uint64) (uint64, error), index uint64, interrupt <-chan struct{}) callResult {
	if interrupt == nil {
		got, err := fn(ctx, index)
		return callResult{got: got, err: err}
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	returned := make(chan struct{})
	interrupted := make(chan bool, 1)
	go func() {
		select {
		case <-interrupt:
			cancel()
			interrupted <- true
		case <-returned:
			interrupted <- false
		}
	}()
	got, err := fn(cctx, index)
	close(returned)
	return callResult{got: got, err: err, interrupted: <-interrupted}
}
