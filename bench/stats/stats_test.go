package stats

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ten := []time.Duration{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
	for _, c := range []struct {
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{[]time.Duration{7}, 50, 7},
		{[]time.Duration{7}, 99, 7},
		{ten, 50, 5},
		{ten, 90, 9},
		{ten, 99, 10},
		{ten, 100, 10},
		{ten, 1, 1},
		{ten, 0, 1},
		{[]time.Duration{3, 1, 2}, 50, 2},
		{[]time.Duration{4, 1, 3, 2}, 50, 2}, // the lower middle of an even count
		{hundred(), 99, 99},
		{[]time.Duration{3, 9, 1}, 0.1, 1},
	} {
		if got := Percentile(c.ds, c.p); got != c.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", c.ds, c.p, got, c.want)
		}
	}
	if ten[0] != 10 {
		t.Errorf("Percentile sorted its input: %v", ten)
	}
}

// hundred is 100..1, unsorted.
func hundred() []time.Duration {
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(100 - i)
	}
	return ds
}
