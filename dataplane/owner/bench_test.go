package owner

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkFailover measures, per iteration, the time from a speaker's
// death (kill -9: its memberlist stops without a word) or graceful leave to
// the moment a survivor no longer counts it healthy, i.e. recomputes the
// owners without it. Run with -benchtime 20x for the 20 trials;
// p50/p99 are reported as metrics.
func BenchmarkFailover(b *testing.B) {
	for _, mode := range []string{"kill", "leave"} {
		b.Run(mode, func(b *testing.B) {
			var times []time.Duration
			for range b.N {
				times = append(times, failoverTrial(b, mode))
			}
			slices.Sort(times)
			p := func(q float64) float64 {
				i := int(q * float64(len(times)-1))
				return float64(times[i].Microseconds()) / 1000
			}
			b.ReportMetric(p(0.5), "p50-ms")
			b.ReportMetric(p(0.99), "p99-ms")
			b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "max-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func failoverTrial(b *testing.B, mode string) time.Duration {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	a := startMember(b, "node-a", freePort(b, "127.0.0.1"), testKey)
	defer a.stop(b)
	c := startMember(b, "node-c", freePort(b, "127.0.0.1"), testKey, a.addr)
	defer c.stop(b)
	waitHealthy(b, 10*time.Second, a, "node-a", "node-c")
	waitHealthy(b, 10*time.Second, c, "node-a", "node-c")
	start := time.Now()
	if mode == "kill" {
		c.crash(b)
	} else {
		go c.cancel()
	}
	for !slices.Equal(a.Healthy(), []string{"node-a"}) {
		if time.Since(start) > 10*time.Second {
			b.Fatal("departure not seen")
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}
