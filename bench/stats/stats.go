// Package stats holds the statistics the benchmarks under bench/ print, so
// every results file means the same thing by a percentile.
package stats

import (
	"slices"
	"time"
)

// Percentile is the nearest-rank p-th percentile of ds (0 < p <= 100): the
// smallest sample with at least p% of the samples at or below it. ds need
// not be sorted and is not changed; it is 0 when ds is empty.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(p/100*float64(len(s)) + 0.999999)
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}
