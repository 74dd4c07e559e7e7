package load

import (
	"math"
	"testing"
	"time"
)

func TestAverageRunQueue(t *testing.T) {
	const s = time.Second
	for _, c := range []struct {
		name      string
		prev, cur TaskBusy
		dt        time.Duration
		want      float64
	}{
		{"two spinning tasks", TaskBusy{1: 10 * s, 2: 20 * s}, TaskBusy{1: 11 * s, 2: 21 * s}, s, 2},
		// Two spinners on a crowded CPU: each runs a third and waits
		// the rest, and still adds one task to the run queue.
		{"spinners that wait", TaskBusy{1: 0, 2: 0}, TaskBusy{1: s, 2: s}, s, 2},
		{"a daemon's short wake-up", TaskBusy{1: 10 * s, 3: 5 * s}, TaskBusy{1: 11 * s, 3: 5*s + time.Millisecond}, s, 1.001},
		{"a task that started", TaskBusy{1: 10 * s}, TaskBusy{1: 11 * s, 4: s / 2}, s, 1.5},
		{"a task that ended", TaskBusy{1: 10 * s, 5: 3 * s}, TaskBusy{1: 11 * s}, s, 1},
		{"an id reused by a new task", TaskBusy{6: 9 * s}, TaskBusy{6: s / 4}, s, 0.25},
		{"no task more than the interval", TaskBusy{}, TaskBusy{7: 100 * s}, s, 1},
		{"idle", TaskBusy{1: s}, TaskBusy{1: s}, s, 0},
		{"half a second", TaskBusy{1: 0}, TaskBusy{1: s / 2}, s / 2, 1},
		{"no time", TaskBusy{1: 0}, TaskBusy{1: s}, 0, 0},
		{"no first reading", nil, TaskBusy{1: s / 10}, s, 0.1},
	} {
		if got := AverageRunQueue(c.prev, c.cur, c.dt); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestRoundRunQueue(t *testing.T) {
	for _, c := range []struct {
		avg  float64
		want uint32
	}{{0, 0}, {-1, 0}, {math.NaN(), 0}, {0.49, 0}, {0.5, 1}, {2.3, 2}, {2.6, 3}, {math.Inf(1), math.MaxUint32}, {1e20, math.MaxUint32}} {
		if got := RoundRunQueue(c.avg); got != c.want {
			t.Errorf("RoundRunQueue(%v) = %d, want %d", c.avg, got, c.want)
		}
	}
}
