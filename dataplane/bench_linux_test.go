package dataplane

import (
	"bytes"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/packet"
)

// benchClient opens a packet socket on the client's br0 for ARP.
func benchClient(b *testing.B, l *l2lab) (*packet.Conn, net.HardwareAddr) {
	var (
		c   *packet.Conn
		mac net.HardwareAddr
	)
	if err := l.client.Do(func() error {
		ifi, err := net.InterfaceByName("br0")
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		c, err = packet.Listen(ifi, packet.Raw, etherTypeARP, &packet.Config{Filter: arpFilter})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	setRcvBuf(c, rcvBuf)
	return c, mac
}

func isReplyFor(buf []byte, n int, node net.HardwareAddr) bool {
	return n >= 42 && buf[21] == 2 && bytes.Equal(buf[22:28], node) && bytes.Equal(buf[28:32], vip4.AsSlice())
}

// BenchmarkARPReplyLatency: one request at a time from the client
// namespace, through a veth and a bridge, to the userspace responder and
// back; p50/p99 of the round trip.
func BenchmarkARPReplyLatency(b *testing.B) {
	l := newL2Lab(b, 1)
	r := l.start(0, nil, Options{})
	r.SetOwned(owned([]string{"eth0"}, vip4))
	c, mac := benchClient(b, l)
	node, _ := net.ParseMAC(l.macs[0])
	req := arpRequest(ethBroadcast, mac, clientV4, vip4)
	buf := make([]byte, 2048)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := c.WriteTo(req, &packet.Addr{HardwareAddr: ethBroadcast}); err != nil {
			b.Fatal(err)
		}
		_ = c.SetReadDeadline(start.Add(time.Second))
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				b.Fatalf("no reply: %v", err)
			}
			if isReplyFor(buf, n, node) {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[(len(lat)-1)*99/100].Microseconds()), "p99-us")
}

// BenchmarkARPFlood: the client sends b.N requests as fast as it can; the
// metric is replies received per second and the share answered.
func BenchmarkARPFlood(b *testing.B) {
	l := newL2Lab(b, 1)
	r := l.start(0, nil, Options{})
	r.SetOwned(owned([]string{"eth0"}, vip4))
	c, mac := benchClient(b, l)
	node, _ := net.ParseMAC(l.macs[0])
	req := arpRequest(ethBroadcast, mac, clientV4, vip4)
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if isReplyFor(buf, n, node) {
				got.Add(1)
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := c.WriteTo(req, &packet.Addr{HardwareAddr: ethBroadcast}); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	elapsed := time.Since(start) - 500*time.Millisecond
	b.StopTimer()
	b.ReportMetric(float64(got.Load())/elapsed.Seconds(), "replies/s")
	b.ReportMetric(100*float64(got.Load())/float64(b.N), "%answered")
}
