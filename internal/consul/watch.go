package consul

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/consul/api"
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
	// WaitTime is the blocking queries' wait time (0: Consul's default, 5m).
	// Used by WatchPrefix and KV.Watch.
	WaitTime time.Duration
	// OnError, if set, is called with every failed call's error and the
	// delay before the next attempt (for logging).
	OnError func(err error, retryIn time.Duration)

	// Seams for tests: nil means the real clock, timer and randomness.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
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

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// watchState is what the watch loop carries from one call to the next.
type watchState struct {
	index    uint64 // the index the next call waits on
	failures int    // consecutive failed calls
}

// nextStep is the watch loop's whole policy, a pure function: given the state
// before a call, the call's result (got, err) and how long it took, it returns
// the state for the next call and how long to wait before making it. jitter
// is a random number in [0,1).
//
// It follows Consul's blocking-query rules: an index that goes backwards is
// reset to 0 (a fresh, non-blocking read); an index of 0 after a successful
// call is replaced by 1 so the next call blocks; errors back off
// exponentially with jitter and keep the old index; a call that returned
// without the index moving is rate-limited to one per MinInterval.
func nextStep(s watchState, got uint64, err error, elapsed time.Duration, o WatchOptions, jitter float64) (watchState, time.Duration) {
	if err != nil {
		s.failures++
		return s, backoff(s.failures, o.MinBackoff, o.MaxBackoff, jitter)
	}
	s.failures = 0
	prev := s.index
	switch {
	case got < prev:
		s.index = 0
		return s, max(o.MinInterval-elapsed, 0)
	case got == 0:
		s.index = 1
		return s, max(o.MinInterval-elapsed, 0)
	case got == prev:
		return s, max(o.MinInterval-elapsed, 0)
	default:
		s.index = got
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
// immediate read), handles its result when the index moved, and returns the
// query's new index (X-Consul-Index) or an error. See [nextStep] for how the
// index and the delays are derived; fn never needs to sleep.
func Watch(ctx context.Context, fn func(waitIndex uint64) (newIndex uint64, err error), opts WatchOptions) error {
	o := opts.withDefaults()
	var s watchState
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := o.now()
		got, err := fn(s.index)
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		var delay time.Duration
		s, delay = nextStep(s, got, err, o.now().Sub(start), o, o.rand())
		if err != nil && o.OnError != nil {
			o.OnError(err, delay)
		}
		if delay > 0 {
			if err := o.sleep(ctx, delay); err != nil {
				return err
			}
		}
	}
}

// WatchPrefix watches the raw Consul key prefix (no "openssi/" added; see
// [KV.Watch] for that) and calls onChange with all pairs under it and the
// index, first at once and then each time the index moves. onChange runs on
// the watching goroutine and may see the same data twice (after an index
// reset). It returns ctx.Err() when ctx ends.
func WatchPrefix(ctx context.Context, client *api.Client, prefix string, onChange func(pairs api.KVPairs, index uint64), opts WatchOptions) error {
	return Watch(ctx, func(wait uint64) (uint64, error) {
		q := (&api.QueryOptions{WaitIndex: wait, WaitTime: opts.WaitTime}).WithContext(ctx)
		pairs, meta, err := client.KV().List(prefix, q)
		if err != nil {
			return wait, err
		}
		if meta.LastIndex != wait || wait == 0 {
			onChange(pairs, meta.LastIndex)
		}
		return meta.LastIndex, nil
	}, opts)
}
