package bpf

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkAnnounce1000 measures one Announce round for 1,000 VIPs (250
// IPv4, two frames each, and 750 IPv6): 1,250 frames written by the program
// and sent with live frames. Reported: frames/s.
func BenchmarkAnnounce1000(b *testing.B) {
	for _, mode := range []AttachMode{AttachNative, AttachGeneric} {
		b.Run(string(mode), func(b *testing.B) {
			l := newLab(b)
			l.giveClientNAPI(b)
			f := l.load(b, mode, nil)
			v4, v6 := takeover(250, 750)
			vips := append(append([]netip.Addr{}, v4...), v6...)
			own(b, f, vips...)
			renew(b, f, time.Hour)
			b.ResetTimer()
			frames := 0
			for b.Loop() {
				n, err := f.Announce(nodeIf, vips)
				if err != nil {
					b.Fatalf("announce: %v", err)
				}
				frames += n
			}
			b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}
