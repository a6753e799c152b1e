package lab

import (
	"testing"
	"time"
)

// Unanswered counts runs of two or more unanswered requests, measures the
// outage from the run's first request to the next reply, and forgives a
// reply that comes just after the next request.
func TestARPProberUnanswered(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	p := &ARPProber{}
	for i := 0; i <= 200; i += 10 {
		p.sentAt = append(p.sentAt, ms(i))
	}
	p.lastSent = ms(200)
	// Answered: 0, 10 (late: after the request at 20), 20; then nothing
	// for 30..80; answered again from 90 (reply at 95).
	for _, r := range []int{1, 21, 22, 95, 101, 111, 121, 131, 141, 151, 161, 171, 181, 191, 201} {
		p.replies = append(p.replies, ARPReply{At: ms(r), MAC: "02:00:00:00:00:01"})
	}
	n, longest := p.Unanswered(ms(0), ms(200))
	if n != 6 || longest != 65*time.Millisecond {
		t.Errorf("Unanswered = %d requests, longest %v; want 6 (30..80), 65ms (30 → reply at 95)", n, longest)
	}
	// A run still open at the end lasts until the last request.
	p.replies = p.replies[:3]
	if n, longest := p.Unanswered(ms(0), ms(200)); n != 18 || longest != 170*time.Millisecond {
		t.Errorf("open run: Unanswered = %d, %v; want 18, 170ms", n, longest)
	}
}
