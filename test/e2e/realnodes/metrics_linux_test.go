package realnodes_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab/realnodes"
)

// metrics logs a scenario's numbers for `make bench` (its realnodes
// section reads the lines "metrics: key=value ..." of each subtest), next
// to the "figure: ..." line people read.
func metrics(t *testing.T, kv map[string]float64) {
	t.Helper()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		fmt.Fprintf(&b, " %s=%g", k, kv[k])
	}
	t.Logf("metrics:%s", b.String())
}

// loadMetrics are a client stream's counts: requests sent, answered,
// failed, and the longest time between two answers.
func loadMetrics(r realnodes.LoadResult, more map[string]float64) map[string]float64 {
	kv := map[string]float64{"sent": float64(r.Sent), "ok": float64(r.OK), "failed": float64(r.Failed), "gap_ms": ms(r.LongestGap)}
	maps.Copy(kv, more)
	return kv
}

func ms(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond)) / float64(time.Millisecond)
}
