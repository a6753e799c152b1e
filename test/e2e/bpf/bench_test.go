package bpf_test

import (
	"errors"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/bench/report"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// BenchmarkAgentRestartGap restarts the owner's agent (SIGTERM, start
// again) once per iteration while the client sends an ARP request for the
// VIP every 10 ms, and reports what the client saw: the longest time
// between two replies (p50 and max over the iterations, in ms), the
// requests left unanswered in all, and how long the agent was away.
func BenchmarkAgentRestartGap(b *testing.B) {
	al := newAgentLab(b, 2, labOpts{})
	al.start(0)
	al.start(1)
	o := al.owner(agentVIP4)
	var gaps, away []float64
	unanswered := 0
	for i := 0; i < b.N; i++ {
		pr := al.StartProber(b, agentVIP4, 10*time.Millisecond)
		time.Sleep(200 * time.Millisecond)
		t0 := time.Now()
		al.stop(o)
		p := al.start(o)
		away = append(away, float64(time.Since(t0).Milliseconds()))
		lab.Eventually(b, 15*time.Second, 50*time.Millisecond, func() error {
			if countLines(p.Log(), "owner of VIP: answering", "vip="+agentVIP4) == 0 {
				return errors.New("the restarted agent does not own the VIP yet")
			}
			return nil
		})
		time.Sleep(300 * time.Millisecond)
		sent, replies, gap := stopProber(pr, 300*time.Millisecond)
		got := 0
		for m, n := range replies {
			if m == al.macs[o] {
				got += n
			}
		}
		unanswered += sent - got
		gaps = append(gaps, float64(gap.Microseconds())/1000)
	}
	b.ReportMetric(report.Percentile(gaps, 50), "gap_p50_ms")
	b.ReportMetric(report.Percentile(gaps, 100), "gap_max_ms")
	b.ReportMetric(float64(unanswered), "unanswered")
	b.ReportMetric(report.Percentile(away, 50), "restart_p50_ms")
}
