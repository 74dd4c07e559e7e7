package election

import (
	"testing"
	"time"
)

func TestLeaseExpired(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	for _, c := range []struct {
		name  string
		last  time.Time
		now   time.Time
		lease time.Duration
		want  bool
	}{
		{"just answered", t0, t0, time.Second, false},
		{"a probe period late", t0, t0.Add(100 * ms), time.Second, false},
		{"a stall of most of the lease", t0, t0.Add(999 * ms), time.Second, false},
		{"at the lease's end", t0, t0.Add(time.Second), time.Second, true},
		{"past it", t0, t0.Add(5 * time.Second), time.Second, true},
		{"short lease", t0, t0.Add(200 * ms), 200 * ms, true},
		{"long lease", t0, t0.Add(5 * time.Second), 10 * time.Second, false},
		{"clock before the answer", t0, t0.Add(-time.Second), time.Second, false},
	} {
		if got := LeaseExpired(c.last, c.now, c.lease); got != c.want {
			t.Errorf("%s: LeaseExpired(+%v, lease %v) = %v, want %v", c.name, c.now.Sub(c.last), c.lease, got, c.want)
		}
	}
}

// TestLeaseBound checks the arithmetic of the bound: the kill of a holder
// whose dlmd froze lands before the earliest start elsewhere.
func TestLeaseBound(t *testing.T) {
	for _, c := range []struct{ lease, stop time.Duration }{
		{time.Second, time.Second},
		{time.Second, 10 * time.Second},
		{200 * time.Millisecond, time.Second},
		{time.Minute, 10 * time.Minute},
	} {
		a := time.Unix(1000, 0)
		// The peers grant no earlier than the last ping (A - L/10) plus
		// L plus their margin L/10; the new holder starts S later.
		earliestStart := a.Add(-c.lease / 10).Add(c.lease + c.lease/10).Add(c.stop)
		kill := LeaseEnd(a, c.lease).Add(KillAfter(c.stop))
		if !kill.Before(earliestStart) {
			t.Errorf("lease %v stop %v: kill at +%v, start at +%v", c.lease, c.stop, kill.Sub(a), earliestStart.Sub(a))
		}
		if p := ProbeEvery(c.lease); p <= 0 || p > c.lease/5 {
			t.Errorf("lease %v: probe every %v", c.lease, p)
		}
	}
}
