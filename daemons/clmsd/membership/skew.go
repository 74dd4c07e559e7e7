package membership

import "time"

// ClockSample is one round trip of the clock exchange, NTP style: t0 the
// caller sent, t1 the peer received, t2 the peer replied, t3 the caller
// received (t0 and t3 on the caller's clock, t1 and t2 on the peer's).
type ClockSample struct {
	T0, T1, T2, T3 time.Time
}

// Offset returns the peer's clock offset relative to the caller (positive:
// the peer is ahead) and the round-trip delay, with NTP's formulas:
// offset = ((t1-t0) + (t2-t3)) / 2, delay = (t3-t0) - (t2-t1).
func (s ClockSample) Offset() (offset, delay time.Duration) {
	offset = (s.T1.Sub(s.T0) + s.T2.Sub(s.T3)) / 2
	delay = s.T3.Sub(s.T0) - s.T2.Sub(s.T1)
	return offset, delay
}

// Skew is the current offset estimate for one peer.
type Skew struct {
	Offset time.Duration
	Delay  time.Duration
	// Warn is set when |Offset| exceeds the threshold.
	Warn bool
}

// SkewTracker keeps the last Window samples per peer and estimates the
// offset from the one with the smallest delay (NTP's clock filter: the
// shortest round trip bounds the error best). It is not safe for concurrent
// use.
type SkewTracker struct {
	Window    int
	Threshold time.Duration
	samples   map[int][]sampleResult
}

type sampleResult struct {
	offset, delay time.Duration
}

// NewSkewTracker returns a tracker keeping window samples per peer.
func NewSkewTracker(window int, threshold time.Duration) *SkewTracker {
	if window < 1 {
		window = 1
	}
	return &SkewTracker{Window: window, Threshold: threshold, samples: map[int][]sampleResult{}}
}

// Add records a sample for peer node n. Samples with a negative delay
// (clocks stepped during the exchange) are ignored; Add reports whether the
// sample was kept.
func (t *SkewTracker) Add(n int, s ClockSample) bool {
	off, d := s.Offset()
	if d < 0 {
		return false
	}
	w := append(t.samples[n], sampleResult{off, d})
	if len(w) > t.Window {
		w = w[len(w)-t.Window:]
	}
	t.samples[n] = w
	return true
}

// Forget drops what is known of peer n (it went down).
func (t *SkewTracker) Forget(n int) { delete(t.samples, n) }

// Get returns the estimate for peer n.
func (t *SkewTracker) Get(n int) (Skew, bool) {
	w := t.samples[n]
	if len(w) == 0 {
		return Skew{}, false
	}
	best := w[0]
	for _, r := range w[1:] {
		if r.delay < best.delay {
			best = r
		}
	}
	abs := best.offset
	if abs < 0 {
		abs = -abs
	}
	return Skew{Offset: best.offset, Delay: best.delay, Warn: t.Threshold > 0 && abs > t.Threshold}, true
}
