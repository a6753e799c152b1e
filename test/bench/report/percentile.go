package report

import (
	"cmp"
	"math"
	"slices"
)

// Percentile is the p-th percentile (0–100) of xs by the nearest-rank
// rule: the smallest sample with at least p % of the samples at or below
// it, the ⌈p/100 × n⌉-th of n sorted samples. So the p99 of fewer than 100
// samples is their maximum, and the p50 of 20 samples is the 10th. Every
// p50/p99 in bench/RESULTS.md is computed this way (docs/decisions.md).
func Percentile[T cmp.Ordered](xs []T, p float64) T {
	if len(xs) == 0 {
		var zero T
		return zero
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
