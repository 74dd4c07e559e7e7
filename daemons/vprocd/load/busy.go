package load

import (
	"math"
	"time"
)

// TaskBusy is what each task (by its thread id) of a node has spent
// runnable over its life: the time it ran plus the time it waited for a
// CPU (/proc/<pid>/task/<tid>/schedstat, fields 1 and 2).
type TaskBusy map[int32]time.Duration

// AverageRunQueue is the average number of runnable tasks between two
// readings of a node's TaskBusy taken dt apart: the time its tasks spent
// runnable over that time, divided by it. It is what a run queue counted
// at one instant estimates, without the instant's noise: a daemon whose
// thread wakes for a millisecond adds a thousandth, where a count that
// catches it adds one. A task only in cur started between the readings
// (or took an ended one's id: less than before) and counts from zero; one
// only in prev ended and counts nothing; no task counts for more than dt
// (a task is runnable at most all the time). 0 when dt is not positive.
func AverageRunQueue(prev, cur TaskBusy, dt time.Duration) float64 {
	if dt <= 0 {
		return 0
	}
	var sum time.Duration
	for tid, b := range cur {
		d := b
		if p, ok := prev[tid]; ok && p <= b {
			d = b - p
		}
		sum += min(d, dt)
	}
	return float64(sum) / float64(dt)
}

// RoundRunQueue is a run queue for a Vector: the average rounded to the
// nearest task, bounded to what a uint32 holds.
func RoundRunQueue(avg float64) uint32 {
	if !(avg > 0) {
		return 0
	}
	return uint32(min(math.Round(avg), math.MaxUint32))
}
