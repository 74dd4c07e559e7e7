package level

import (
	"testing"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/load"
)

func TestSteady(t *testing.T) {
	at := func(s int, rq uint32) load.Vector {
		return load.Vector{Node: 1, RunQueue: rq, CPUs: 2, At: t0.Add(time.Duration(s) * time.Second)}
	}
	var s Steady
	for i, tc := range []struct {
		in   load.Vector
		want uint32
	}{
		{at(0, 6), 6},  // the first reading is all there is
		{at(2, 6), 6},  // seen twice
		{at(4, 5), 5},  // a fall counts at once
		{at(6, 9), 5},  // a spike is held back...
		{at(8, 5), 5},  // ...and gone
		{at(10, 7), 5}, // a rise...
		{at(12, 7), 7}, // ...seen twice counts
		{at(12, 7), 7}, // the same reading again changes nothing
		{at(14, 4), 4},
	} {
		got := s.Add(tc.in)
		if got.RunQueue != tc.want || !got.At.Equal(tc.in.At) || got.CPUs != 2 {
			t.Errorf("reading %d (%d at %v): %+v, want run queue %d at its time", i, tc.in.RunQueue, tc.in.At, got, tc.want)
		}
	}
}

// TestSteadyAverage: the lesser reading is the lesser of the averages
// Decide compares, one taken from a reading without an average as its
// run queue.
func TestSteadyAverage(t *testing.T) {
	at := func(s int, rq uint32, avg float64) load.Vector {
		return load.Vector{Node: 1, RunQueue: rq, RunQueueAvg: avg, CPUs: 2, At: t0.Add(time.Duration(s) * time.Second)}
	}
	var s Steady
	for i, tc := range []struct {
		in   load.Vector
		want float64
	}{
		{at(0, 2, 2.4), 2.4},
		{at(2, 3, 2.6), 2.4}, // a rise held back, though both round apart
		{at(4, 3, 2.7), 2.6},
		{at(6, 2, 2.45), 2.45}, // a fall at once
		{at(8, 2, 0), 2},       // a reading without an average: its run queue
		{at(10, 3, 2.9), 2},
	} {
		if got := s.Add(tc.in); got.Tasks() != tc.want {
			t.Errorf("reading %d (%+v): Tasks %v, want %v", i, tc.in, got.Tasks(), tc.want)
		}
	}
}
